"""torch-radon's idioms (v1 README/examples/tests, v2 tests) run against ours, and the import guard."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from reconstruct.projectors import torch_radon_api as tr
from reconstruct.projectors.backends import import_torch_radon, torch_radon_v1, torch_radon_v2

N = 64


@pytest.fixture(scope="module")
def phantom():
    image = resize(shepp_logan_phantom(), (N, N), anti_aliasing=True)
    r = np.arange(N) - N // 2
    image[(r[:, None] ** 2 + r[None, :] ** 2) > (N // 2 - 1) ** 2] = 0.0
    return torch.from_numpy(image).float()


def rel(a, b) -> float:
    return float(torch.norm(a - b) / torch.norm(b))


def test_v1_fbp_example_reconstructs(phantom):
    # examples/fbp.py: Radon(image_size, angles, clip_to_circle=True); backprojection(filter_sinogram(sino))
    angles = np.linspace(0, np.pi, N, endpoint=False)
    radon = tr.Radon(N, angles, clip_to_circle=True)
    with torch.no_grad():
        sinogram = radon.forward(phantom)
        fbp = radon.backprojection(radon.filter_sinogram(sinogram))
    assert rel(fbp, phantom) < 0.2  # the old scaling was 81.5x too large
    for name in ("ram-lak", "shepp-logan", "cosine", "hamming", "hann"):
        assert rel(radon.backprojection(radon.filter_sinogram(sinogram, filter_name=name)), phantom) < 0.35
    assert torch.equal(radon.backward(sinogram), radon.backprojection(sinogram))


def test_v1_defaults_batches_and_landweber(phantom):
    radon = tr.Radon(N, np.linspace(0, np.pi, 32, endpoint=False), det_count=-1)
    assert radon.det_count == N
    batch = phantom.reshape(1, 1, N, N).repeat(2, 3, 1, 1)
    sino = radon.forward(batch)
    assert sino.shape == (2, 3, 32, N)
    # examples/landweber.py: step 2 / ||A^T A|| by power iteration, x <- x - alpha A^T (A x - y)
    x = torch.randn(4, N, N)
    for _ in range(20):
        x = radon.backward(radon.forward(x))
        v = float(x.reshape(4, -1).norm(dim=1).max())
        x = x / x.reshape(4, -1).norm(dim=1).view(-1, 1, 1)
    alpha, rec = 1.9 / v, torch.zeros(N, N)
    y = radon.forward(phantom)
    for _ in range(60):
        rec = rec - alpha * radon.backward(radon.forward(rec) - y)
    assert rel(radon.forward(rec), y) < 0.05


def test_v1_fanbeam_defaults_and_fbp(phantom):
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    radon = tr.RadonFanbeam(N, angles, source_distance=2.0 * N, det_count=2 * N)
    assert radon.det_distance == radon.source_distance and radon.det_spacing == 2.0
    radon = tr.RadonFanbeam(N, angles, source_distance=2.0 * N, det_distance=N, det_count=2 * N)
    assert radon.det_spacing == pytest.approx(1.5)
    sino = radon.forward(phantom)
    assert sino.shape == (180, 2 * N)
    assert rel(radon.fbp(sino), phantom) < 0.25
    y = torch.randn_like(sino)
    assert abs((sino * y).sum() - (phantom * radon.backward(y)).sum()) / abs((sino * y).sum()) < 1e-4


@pytest.mark.parametrize("volume_args, spacing", [(None, 1.0), (((0, 0), (1.0, 1.0)), 2.0),
                                                  (((17, -25), (0.75, 0.75)), 2.0), (((5, 3), (0.7, 1.3)), 1.3)])
def test_v2_parallel_fan_backward_check(volume_args, spacing):
    # tests/test_parallelbeam.py, test_fanbeam.py: (start, end, n) angles, Volume2D(center, voxel_size),
    # backward_check: <bp, x> = <y/max y, y> / (vx * vy) within 1e-3.
    h, w = 37, 29
    for cls, angles in ((tr.ParallelBeam, (0, np.pi, 64)), (tr.FanBeam, (0, 2 * np.pi, 64))):
        volume = tr.Volume2D() if volume_args is None else tr.Volume2D(*volume_args)
        volume.set_size(h, w)
        det_count = int(1.5 * max(h, w) * max(volume.voxel_size)) + 8
        radon = cls(det_count, angles, spacing, volume=volume) if cls is tr.ParallelBeam else \
            cls(det_count, angles, 3.0 * det_count, 3.0 * det_count, spacing, volume)
        assert radon.angles.numel() == 64
        x = torch.rand(4, h, w)
        y = radon.forward(x)
        assert y.shape == (4, 64, det_count)
        test_sino = y / y.max()
        target = (test_sino * y).sum(dim=(1, 2)) / (volume.voxel_size[0] * volume.voxel_size[1])
        value = (radon.backward(test_sino) * x).sum(dim=(1, 2))
        assert float(((target - value).abs() / target.abs()).max()) < 1e-3


def test_v2_cone_and_tuple_angles():
    volume = tr.Volume3D()
    volume.set_size(16, 16, 16)
    radon = tr.ConeBeam(24, np.linspace(0, 2 * np.pi, 20).astype(np.float32), 48.0, 48.0, det_spacing_u=1.5,
                        volume=volume)
    x = torch.rand(2, 16, 16, 16)
    y = radon.forward(x)
    assert y.shape == (2, 20, 24, 24)
    assert rel(y[1], radon.forward(x[1])) < 1e-6
    back = radon.backward(y)
    assert back.shape == x.shape
    assert tr.ParallelBeam(8, (0.0, np.pi, 3)).angles.numel() == 3  # a range, not three angles
    np.testing.assert_allclose(tr.ParallelBeam(8, (0.0, np.pi, 3)).angles.numpy(), [0, np.pi / 3, 2 * np.pi / 3])
    assert tr.Radon(8, (0.0, 0.5, 3)).n_angles == 3  # v1 has no range form: three explicit angles


def _stub(version: int):
    module = types.ModuleType("torch_radon")
    calls = []

    class Fake:
        def __init__(self, *args, **kwargs):
            calls.append(("init", args, kwargs))

        def forward(self, x):
            calls.append("forward")
            return x

    if version == 1:
        module.Radon = Fake
        module.RadonFanbeam = Fake
    else:
        module.ParallelBeam = Fake
        module.FanBeam = Fake
        module.ConeBeam = Fake
        module.Volume2D = object
    return module, calls


@pytest.mark.parametrize("version", [1, 2])
def test_guard_with_stub_modules_never_breaks_cpu(monkeypatch, version):
    module, calls = _stub(version)
    monkeypatch.setitem(sys.modules, "torch_radon", module)
    assert import_torch_radon() is module
    assert (torch_radon_v1(module) is module) == (version == 1)
    assert (torch_radon_v2(module) is module) == (version == 2)
    radon = tr.Radon(16, np.linspace(0, np.pi, 8, endpoint=False))
    assert radon.backend == ("torch_radon" if version == 1 else "torch")
    beam = tr.ParallelBeam(16, (0, np.pi, 8))
    assert (beam._real is not None) == (version == 2)
    image = torch.rand(16, 16)
    # CPU tensors always take our path, whatever is installed: the stub's identity "forward" is never used.
    assert radon(image).shape == (8, 16)
    assert beam.forward(image).shape == (8, 16)
    assert "forward" not in calls


def test_guard_survives_a_broken_package(monkeypatch):
    class Broken(types.ModuleType):
        def __getattr__(self, name):
            raise RuntimeError("CUDA extension failed to load")

    monkeypatch.setitem(sys.modules, "torch_radon", Broken("torch_radon"))
    assert tr.Radon(8, [0.0, 1.0]).backend == "torch"
    from reconstruct.tasks import ct_reconstruct

    sino = tr.Radon(17, np.deg2rad(np.arange(0, 180, 15.0)))(torch.rand(17, 17, dtype=torch.float64)).numpy()
    result = ct_reconstruct(sino, np.arange(0, 180, 15.0), layout="torch", method="fbp", device="cpu")
    assert result.output.shape == (17, 17)
