"""Ground-truth-free early stopping on held-out measurements (reconstruct.fit.HeldOut)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_nets import get_network, set_fused_backend
from reconstruct.fit import HeldOut, fit
from reconstruct.operators import Identity, RadonOperator


@pytest.fixture(autouse=True)
def eager_activation():
    set_fused_backend("eager")
    yield
    set_fused_backend("auto")


def _net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return get_network("nestnet", spatial_dims=2, out_channels=1, hidden_channels=(32, 32), num_frequencies=16)


def _noisy_photo(n: int = 48, sigma: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    from skimage.data import camera
    from skimage.transform import resize

    clean = resize(camera()[60:316, 150:406] / 255.0, (n, n), anti_aliasing=True).astype(np.float32)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    return clean, noisy


def _pixel_mask(shape: tuple[int, int], fraction: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(1).random(shape) < fraction)[..., None]


def test_held_out_stop_lands_near_the_oracle_without_the_reference():
    clean, noisy = _noisy_photo()
    op = Identity(clean.shape, 1)
    held = HeldOut(_pixel_mask(clean.shape), patience=60)
    blind = fit(_net(), op, noisy[..., None], steps=400, lr=5e-3, held_out=held)
    scored = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=400, lr=5e-3, held_out=held,
                 reference=clean)
    # the reference changes nothing the held-out choice sees
    assert blind.held_out.step == scored.held_out.step
    np.testing.assert_allclose(blind.output, scored.output, atol=1e-6)
    assert blind.stopped_by == "held_out" and blind.steps < 400  # no wasted steps after the stop
    # the oracle (best iterate by the clean image) overfits later; the held-out stop is close to it
    from reconstruct.metrics import psnr

    chosen = psnr(torch.from_numpy(blind.output), torch.from_numpy(clean), 1.0)
    # measured: chosen step 103 at 22.56 dB, oracle step 113 at 22.58 dB (noisy input 19.97 dB)
    assert abs(blind.held_out.step - scored.best.step) <= 20, (blind.held_out.step, scored.best.step)
    assert chosen >= scored.best.metrics["psnr"] - 0.5, (chosen, scored.best.metrics, blind.held_out.step)
    assert chosen > psnr(torch.from_numpy(noisy), torch.from_numpy(clean), 1.0) + 2.0
    curve = dict(blind.held_out.curve)
    assert curve[blind.held_out.step] == min(curve.values())


def test_held_out_projections_for_ct_use_the_plain_projections():
    n, views = 24, 30
    yy, xx = np.mgrid[:n, :n] - n / 2
    disc = ((xx**2 + yy**2) < (n / 3) ** 2).astype(np.float32)
    angles = np.linspace(0, np.pi, views, endpoint=False)
    op = RadonOperator(n, angles)
    with torch.no_grad():
        sino = op(torch.from_numpy(disc)[..., None]).numpy()
    mask = np.zeros((views, 1), bool)
    mask[::6] = True
    result = fit(_net(), op, sino, steps=60, lr=5e-3, held_out=HeldOut(mask, patience=None))
    assert result.held_out.fraction == pytest.approx(mask.mean())
    errors = [e for _, e in result.held_out.curve]
    assert errors[-1] < 0.5 * errors[0]  # unseen projections are predicted better as the fit learns
    assert "held_out_error" in result.history[0]


@pytest.mark.parametrize(("mask", "match"), [
    (np.zeros((24, 24, 1), bool), "some measurements in and some out"),
    (np.ones((24, 24, 1), bool), "some measurements in and some out"),
    (np.zeros((5, 5, 1), bool), "does not fit the measurement"),
])
def test_bad_masks_get_one_line(mask, match):
    with pytest.raises(ValueError, match=match):
        fit(_net(), Identity((24, 24), 1), np.zeros((24, 24, 1), np.float32), steps=2, held_out=HeldOut(mask))


def test_ct_task_holds_projections_out_and_records_the_choice():
    from skimage.transform import radon

    from reconstruct.tasks import ct_reconstruct
    from reconstruct.tasks.ct import held_out_projections

    mask = held_out_projections(30, 0.1)
    assert mask.sum() == 3 and not mask[0] and not mask[-1]
    n = 24
    yy, xx = np.mgrid[:n, :n] - n / 2
    disc = ((xx**2 + yy**2) < (n / 3) ** 2).astype(np.float64)
    theta = np.linspace(0, 180, 30, endpoint=False)
    sino = radon(disc, theta=theta, circle=True)
    result = ct_reconstruct(sino, theta, steps=200, held_out=0.1, patience=10,
                            model_kwargs={"hidden_channels": (16, 16)})
    chosen = result.extras["held_out"]
    assert result.stopped_by in ("held_out", "steps") and chosen["fraction"] == pytest.approx(0.1)
    assert chosen["step"] == min(chosen["curve"], key=lambda point: point[1])[0]
    assert result.extras["parameters"]["held_out"] == 0.1
