"""Ground-truth-free stopping: held-out measurements (reconstruct.fit.HeldOut, the tasks' stop="held_out"),
the discrepancy principle, the noise estimate, the stop parameters' errors and the stop in the records."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from monai_nets import get_network, set_fused_backend
from reconstruct.fit import Discrepancy, HeldOut, fit
from reconstruct.metrics import psnr
from reconstruct.operators import Identity, RadonOperator
from reconstruct.stopping import estimate_noise_sigma, random_mask


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
    result = ct_reconstruct(sino, theta, steps=200, held_out=0.1, patience=10, refit=False,
                            model_kwargs={"hidden_channels": (16, 16)})
    chosen = result.extras["stop"]
    assert chosen["rule"] == "held_out" and chosen["refit_steps"] == 0
    assert result.stopped_by in ("held_out", "steps") and chosen["fraction"] == pytest.approx(0.1)
    assert chosen["step"] == min(chosen["curve"], key=lambda point: point[1])[0]
    assert result.extras["parameters"]["held_out"] == 0.1 and result.extras["parameters"]["stop"] == "auto"
    # held_out=0 runs all the steps; the default holds a tenth of the projections out and refits
    plain = ct_reconstruct(sino, theta, steps=5, held_out=0.0, model_kwargs={"hidden_channels": (16, 16)})
    assert plain.steps == 5 and plain.extras["stop"]["rule"] == "none"
    default = ct_reconstruct(sino, theta, steps=5, model_kwargs={"hidden_channels": (16, 16)})
    assert default.extras["stop"]["rule"] == "held_out" and default.extras["stop"]["fraction"] == pytest.approx(0.1)
    assert default.extras["stop"]["refit_steps"] == default.extras["stop"]["step"]


def test_refit_finishes_on_all_the_data_for_the_chosen_steps():
    clean, noisy = _noisy_photo()
    held = HeldOut(_pixel_mask(clean.shape), patience=60, refit=True)
    seen = []
    result = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=400, lr=5e-3, held_out=held,
                 on_step=lambda info: seen.append((info.step, info.steps)))
    k = result.held_out.step
    assert result.held_out.refit_steps == k and result.steps == len(result.history) == seen[-1][0]
    first = result.steps - k
    assert [s for s, _ in seen] == list(range(1, result.steps + 1))  # one count across both phases
    assert seen[-1] == (first + k, first + k)
    # the refit is the all-data run with the same start and schedule, stopped at the chosen step
    lr_decay = 0.1 ** (k / 400)
    direct = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=k, lr=5e-3, lr_decay=lr_decay)
    np.testing.assert_allclose(result.output, direct.output, atol=1e-5)
    # measured: step 103, 23.01 dB refitted vs 22.56 dB for the held-out iterate itself
    restored = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=400, lr=5e-3,
                   held_out=HeldOut(held.mask, patience=60))
    assert psnr(result.output, clean, 1.0) > psnr(restored.output, clean, 1.0)
    # a refit cut short (cancelled, out of time) is worse than the chosen iterate: that one is returned
    assert restored.steps == first and restored.held_out.refit_steps == 0
    cut = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=400, lr=5e-3, held_out=held,
              on_step=lambda info: info.step <= first + 5)
    assert cut.stopped_by == "cancelled" and cut.steps == first + 6 and cut.held_out.refit_steps == 0
    np.testing.assert_allclose(cut.output, restored.output, atol=1e-6)


def _denoise_small(noisy: np.ndarray, **kwargs):
    from reconstruct.tasks import denoise

    return denoise(noisy, model_kwargs={"hidden_channels": (64, 64), "num_frequencies": 16}, device="cpu",
                   **kwargs)


def test_denoise_stops_on_held_out_pixels_by_default_near_the_oracle_without_the_reference():
    clean, noisy = _noisy_photo()
    blind = _denoise_small(noisy)
    scored = _denoise_small(noisy, reference=clean)
    oracle = _denoise_small(noisy, stop="none", reference=clean)  # every step, the best one chosen with the truth
    stop = blind.extras["stop"]
    assert stop["rule"] == "held_out" and stop["stopped_early"] and stop["refit_steps"] == stop["step"] > 0
    assert stop["fraction"] == pytest.approx(0.1, abs=0.01) and blind.stopped_by == "held_out"
    # the reference changes nothing the stop sees or returns
    assert scored.extras["stop"]["step"] == stop["step"]
    np.testing.assert_array_equal(blind.output, scored.output)
    chosen, noisy_db = psnr(blind.output, clean, 1.0), psnr(noisy, clean, 1.0)
    # measured: step 62 (of 155 run), 23.19 dB; oracle 23.21 dB at step 64; noisy 19.97 dB; 300 steps 21.39
    assert chosen >= oracle.best.metrics["psnr"] - 0.5, (chosen, oracle.best.step, stop["step"])
    assert chosen >= noisy_db + 2.0
    assert chosen > oracle.metrics["psnr"] + 0.5  # running every step fits the noise
    assert blind.extras["parameters"]["stop"] == "held_out" and blind.extras["parameters"]["refit"] is True


def test_held_out_stop_of_a_random_batch_fit():
    clean, noisy = _noisy_photo()
    result = _denoise_small(noisy, batch_size=1024, patience=40, reference=clean)
    stop = result.extras["stop"]
    assert stop["rule"] == "held_out" and stop["refit_steps"] == stop["step"]
    steps = [s for s, _ in stop["curve"]]
    assert steps == sorted(steps) and steps[1] - steps[0] == 10  # measured every patience // 4 steps
    assert psnr(result.output, clean, 1.0) > psnr(noisy, clean, 1.0) + 1.0


def test_random_masks_hold_out_the_fraction_seeded():
    mask = random_mask((40, 50, 1), 0.1, seed=3)
    assert mask.sum() == 200 and mask.dtype == bool
    np.testing.assert_array_equal(mask, random_mask((40, 50, 1), 0.1, seed=3))
    assert not np.array_equal(mask, random_mask((40, 50, 1), 0.1, seed=4))
    with pytest.raises(ValueError, match=r"held-out fraction must be in \(0, 1\); got 1.0"):
        random_mask((4, 4), 1.0)


def test_super_resolution_holds_out_low_resolution_pixels_when_asked():
    from reconstruct.tasks import super_resolve, super_resolve_multi
    from reconstruct.tasks.image import downsample, simulate_misr_frames

    clean, _ = _noisy_photo(32)
    small = {"model_kwargs": {"hidden_channels": (16, 16)}, "steps": 8}
    plain = super_resolve(downsample(clean, 2), scale=2, **small)
    assert plain.extras["stop"]["rule"] == "none" and plain.steps == 8  # SR runs its steps unless asked
    result = super_resolve(downsample(clean, 2), scale=2, stop="held_out", **small)
    assert result.extras["stop"]["rule"] == "held_out" and result.output.shape == (32, 32)
    assert result.extras["stop"]["fraction"] == pytest.approx(0.1, abs=0.01)
    shifts, rotations = [[0, 0], [1, 0], [0, 1], [1, 1]], [0.0, 0.0, 0.0, 0.1]
    frames = simulate_misr_frames(clean, shifts, rotations, scale=2)
    multi = super_resolve_multi(frames, shifts=shifts, rotations=rotations, scale=2, stop="held_out", **small)
    assert multi.extras["stop"]["rule"] == "held_out" and multi.output.shape == (32, 32)


# ------------------------------------------------------------------ the discrepancy principle
def test_discrepancy_stops_where_the_residual_first_reaches_tau_sigma():
    clean, noisy = _noisy_photo()
    y = noisy[..., None]
    whole = fit(_net(), Identity(clean.shape, 1), y, steps=200, lr=5e-3, discrepancy=Discrepancy(1e-6))
    assert not whole.discrepancy.reached and whole.stopped_by == "steps" and whole.steps == 200
    sigma, tau = 0.1, 1.05
    first = next(s for s, r in whole.discrepancy.curve if r <= tau * sigma)
    stopped = fit(_net(), Identity(clean.shape, 1), y, steps=200, lr=5e-3, discrepancy=Discrepancy(sigma, tau))
    choice = stopped.discrepancy
    assert choice.reached and stopped.stopped_by == "discrepancy" and 0 < first < 200
    assert choice.step == first == stopped.steps == len(stopped.history)  # no update after the bound is met
    assert all(r > choice.threshold for _, r in choice.curve[:-1]) and choice.residual <= choice.threshold
    assert choice.residual == pytest.approx(dict(whole.discrepancy.curve)[first], rel=1e-5)
    # the model returned is the iterate whose residual met the bound
    assert float(np.sqrt(np.mean((stopped.output - noisy) ** 2))) == pytest.approx(choice.residual, rel=1e-4)
    assert psnr(stopped.output, clean, 1.0) > psnr(noisy, clean, 1.0) + 1.0
    assert "residual_rms" in stopped.history[0]


def test_discrepancy_of_a_random_batch_fit_is_checked_on_evaluation_steps():
    clean, noisy = _noisy_photo()
    result = fit(_net(), Identity(clean.shape, 1), noisy[..., None], steps=400, lr=5e-3, batch_size=512,
                 eval_every=20, discrepancy=Discrepancy(0.1, 1.1))
    assert result.discrepancy.reached and result.steps % 20 == 0
    assert [s for s, _ in result.discrepancy.curve] == list(range(20, result.steps + 1, 20))


def test_the_noise_estimate_finds_the_noise_level():
    clean, noisy = _noisy_photo(96, 0.1)
    assert estimate_noise_sigma(noisy) == pytest.approx(0.1, rel=0.1)
    colour = np.stack([noisy, noisy[::-1], noisy[:, ::-1]], -1)
    assert estimate_noise_sigma(colour, channel_axis=-1) == pytest.approx(0.1, rel=0.1)


def test_denoise_discrepancy_reports_sigma_in_the_data_s_units():
    from reconstruct.tasks import denoise

    clean, noisy = _noisy_photo()
    noisy8 = np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8)
    small = {"model_kwargs": {"hidden_channels": (32, 32), "num_frequencies": 16}, "steps": 200}
    given = denoise(noisy8, stop="discrepancy", noise_sigma=25.5, **small)
    stop = given.extras["stop"]
    assert stop["rule"] == "discrepancy" and stop["sigma_source"] == "given" and stop["sigma"] == pytest.approx(25.5)
    assert stop["threshold"] == pytest.approx(25.5) and stop["reached"]
    assert stop["residual_rms"] <= stop["threshold"] and given.stopped_by == "discrepancy"
    assert stop["step"] == given.steps and given.extras["parameters"]["noise_sigma"] == 25.5
    estimated = denoise(noisy8, stop="discrepancy", tau=1.1, **small).extras["stop"]
    assert estimated["sigma_source"] == "estimated" and estimated["sigma"] == pytest.approx(25.5, rel=0.15)
    assert estimated["threshold"] == pytest.approx(1.1 * estimated["sigma"])


def test_ct_discrepancy_takes_sigma_in_sinogram_units():
    from skimage.transform import radon

    from reconstruct.tasks import ct_reconstruct

    n = 24
    yy, xx = np.mgrid[:n, :n] - n / 2
    disc = ((xx**2 + yy**2) < (n / 3) ** 2).astype(np.float64)
    theta = np.linspace(0, 180, 30, endpoint=False)
    sino = radon(disc, theta=theta, circle=True)
    sino += 0.05 * sino.max() * np.random.default_rng(0).standard_normal(sino.shape)
    result = ct_reconstruct(sino, theta, steps=150, stop="discrepancy", noise_sigma=0.05 * sino.max(),
                            model_kwargs={"hidden_channels": (16, 16)})
    stop = result.extras["stop"]
    assert stop["rule"] == "discrepancy" and stop["sigma"] == pytest.approx(0.05 * sino.max())
    assert stop["reached"] and stop["residual_rms"] <= stop["threshold"] and result.steps == stop["step"] < 150


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"held_out": 1.0}, r"held_out must be a finite number in \[0, 0.5\]; got 1.0"),
    ({"held_out": -0.1}, r"held_out must be a finite number in \[0, 0.5\]"),
    ({"noise_sigma": -1.0}, r"noise_sigma must be a finite number in \(0, inf\] or None; got -1.0"),
    ({"noise_sigma": 0.0}, r"noise_sigma must be a finite number in \(0, inf\]"),
    ({"tau": 0.0}, r"tau must be a finite number in \(0"),
    ({"stop": "early"}, "stop must be one of auto, held_out, discrepancy, none; got 'early'"),
    ({"stop": "held_out", "held_out": 0.0}, "stop='held_out' needs a held_out fraction > 0"),
])
def test_bad_stop_parameters_give_one_line(kwargs, match):
    from reconstruct.tasks import denoise

    with pytest.raises(ValueError, match=match) as info:
        denoise(np.random.default_rng(0).random((16, 16)).astype(np.float32), steps=2, **kwargs)
    assert "\n" not in str(info.value)


def test_one_stop_rule_at_a_time_and_a_positive_sigma():
    y = np.zeros((8, 8, 1), np.float32)
    mask = np.zeros((8, 8, 1), bool)
    mask[0] = True
    with pytest.raises(ValueError, match="choose one stop rule"):
        fit(_net(), Identity((8, 8), 1), y, steps=2, held_out=HeldOut(mask), discrepancy=Discrepancy(0.1))
    with pytest.raises(ValueError, match="the discrepancy sigma must be a finite number > 0; got -0.1"):
        fit(_net(), Identity((8, 8), 1), y, steps=2, discrepancy=Discrepancy(-0.1))


def _noisy_png(path, n: int = 64, sigma: float = 0.1):
    from reconstruct.io import write_image

    yy, xx = np.mgrid[:n, :n] / n
    clean = 0.5 + 0.3 * np.sin(2 * np.pi * 1.5 * xx) * np.cos(2 * np.pi * yy) + 0.15 * (xx > 0.5)
    noisy = clean + sigma * np.random.default_rng(0).standard_normal(clean.shape)
    write_image(path, np.clip(np.round(noisy * 255), 0, 255).astype(np.uint8))
    return clean


def test_the_readme_denoise_command_returns_a_cleaner_image_than_its_input(tmp_path, capsys):
    from reconstruct.cli import main
    from reconstruct.io import read_image

    clean = _noisy_png(tmp_path / "noisy.png")
    code = main(["denoise", str(tmp_path / "noisy.png"), "--model", "siren", "--steps", "300", "--no-progress",
                 "--out", str(tmp_path / "clean.png")])
    assert code == 0, capsys.readouterr().err
    noisy, _ = read_image(tmp_path / "noisy.png")
    out, _ = read_image(tmp_path / "clean.png")
    noisy_db, out_db = psnr(noisy / 255.0, clean, 1.0), psnr(out / 255.0, clean, 1.0)
    assert np.abs(out.astype(float) - noisy).mean() > 4  # measurably different from its input ...
    assert out_db > noisy_db + 3.0, (out_db, noisy_db)  # ... and better (measured: 20.10 -> 25.36 dB at step 11;
    # --stop none, the old behaviour: 20.16 dB, a mean change of 0.2 grey levels)
    record = json.loads((tmp_path / "clean.json").read_text())
    stop = record["stop"]
    assert stop["rule"] == "held_out" and 0 < stop["step"] < 300 and stop["refit_steps"] == stop["step"]
    assert record["steps_run"] < 600 and len(stop["curve"]) > stop["step"]
    assert "stop" not in record["extras"]


@pytest.mark.parametrize(("args", "match"), [
    (["--held-out", "1"], "held_out must be a finite number in [0, 0.5]; got 1"),
    (["--noise-sigma", "-2"], "noise_sigma must be a finite number in (0, inf] or None; got -2"),
    (["--stop", "held_out", "--held-out", "0"], "stop='held_out' needs a held_out fraction > 0"),
])
def test_the_command_line_answers_bad_stop_values_with_one_line(tmp_path, capsys, args, match):
    from reconstruct.cli import main

    _noisy_png(tmp_path / "noisy.png", n=16)
    code = main(["denoise", str(tmp_path / "noisy.png"), "--steps", "2", "--no-progress", *args])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and match in lines[0], err
    assert not (tmp_path / "noisy_denoised.png").exists()
