"""Classical solvers on the projectors, and the CT task's ``method`` / ``geometry`` / ``angle_unit``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reconstruct.projectors import FanBeam2D, ParallelBeam2D
from reconstruct.projectors.phantoms import analytic_projections, rasterize, shepp_logan_2d
from reconstruct.projectors.solvers import CGLS, FBP, SART, SIRT, SOLVERS, TV, make_solver
from reconstruct.tasks import ct_reconstruct


def psnr(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(10 * np.log10((b.max() - b.min()) ** 2 / np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def problem():
    n = 48
    op = ParallelBeam2D((n, n), np.linspace(0, np.pi, 36, endpoint=False), n + 6)
    shapes = shepp_logan_2d(0.45 * n)
    truth = rasterize(shapes, op).float()
    clean = analytic_projections(shapes, op).float()
    gen = torch.Generator().manual_seed(0)
    noisy = clean + 0.01 * clean.abs().max() * torch.randn(clean.shape, generator=gen)
    return op, truth, noisy


def test_iterative_solvers_beat_or_match_fbp(problem):
    op, truth, y = problem
    fbp = psnr(FBP()(op, y), truth)
    scores = {s.name: psnr(s(op, y), truth) for s in (SIRT(iterations=60), SART(iterations=6), CGLS(), TV(weight=0.5))}
    assert fbp > 20.0
    for name, value in scores.items():
        assert value > fbp - 0.5, (name, value, fbp)
    assert set(SOLVERS) == {"fbp", "sirt", "sart", "cgls", "tv"}
    with pytest.raises(ValueError, match="unknown solver 'art'"):
        make_solver("art")


def test_solvers_batch_stop_and_work_on_fan_beam():
    op = FanBeam2D((24, 24), np.linspace(0, 2 * np.pi, 30, endpoint=False), 40, 80.0, 160.0, 1.2)
    x = torch.rand(2, 24, 24, dtype=torch.float64)
    y = op(x)
    seen = []
    out = SIRT(iterations=50, callback=lambda i, xi: seen.append(i) or i == 4)(op, y)
    assert out.shape == (2, 24, 24) and seen == [0, 1, 2, 3, 4]
    cg = CGLS(iterations=30)(op, y)
    assert torch.norm(op(cg) - y) / torch.norm(y) < 0.05
    torch.testing.assert_close(CGLS(iterations=5)(op, y)[1], CGLS(iterations=5)(op, y[1]))


def _sinogram(n=33, n_angles=30):
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize

    image = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True)
    r = np.arange(n) - n // 2
    image[(r[:, None] ** 2 + r[None, :] ** 2) > (n // 2) ** 2] = 0.0
    theta = np.linspace(0, 180, n_angles, endpoint=False)
    return image, radon(image, theta, circle=True), theta


@pytest.mark.parametrize("method", ["fbp", "sirt", "sart", "cgls", "tv"])
def test_ct_task_methods(method):
    image, sino, theta = _sinogram()
    result = ct_reconstruct(sino, theta, method=method, iterations=None if method == "fbp" else 5,
                            reference=image, device="cpu")
    assert result.output.shape == image.shape and result.output.dtype == np.float32
    assert result.metrics["psnr"] > 18.0 and "fbp_metrics" in result.extras
    assert result.extras["parameters"]["method"] == method
    assert result.output[0, 0] == 0.0  # circle=True
    if method == "fbp":
        np.testing.assert_allclose(result.output, result.extras["fbp"])


def test_ct_task_fan_geometry_and_angle_units():
    n = 33
    angles = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    op = FanBeam2D((n, n), angles, 48, 100.0, 200.0, 2.0, voxel_size=1.0)
    image = rasterize(shepp_logan_2d(15.0), op)
    sino = op(image).numpy()
    result = ct_reconstruct(sino, angles, layout="torch", angle_unit="radians", method="fbp", geometry="fan",
                            source_distance=100.0, source_detector_distance=200.0, det_spacing=2.0,
                            output_size=n, circle=False, reference=image.numpy(), device="cpu")
    assert result.metrics["psnr"] > 20.0
    with pytest.raises(ValueError, match=r"look like radians .* angle_unit='radians'") as info:
        ct_reconstruct(sino, angles, layout="torch", method="fbp", device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="needs source_distance"):
        ct_reconstruct(sino, np.rad2deg(angles), layout="torch", method="fbp", geometry="fan", device="cpu")
    with pytest.raises(ValueError, match="method must be one of"):
        ct_reconstruct(sino, np.rad2deg(angles), layout="torch", method="art", device="cpu")
