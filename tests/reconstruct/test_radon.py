"""Tests for reconstruct.radon: agreement with scikit-image, adjointness, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

import reconstruct.projectors._core as core
from reconstruct.radon import (
    FILTER_NAMES,
    Radon,
    sinogram_from_skimage,
    sinogram_to_skimage,
    torch_radon_available,
    validate_sinogram,
)

THETA_DEG = np.arange(0.0, 180.0, 4.0)  # 45 angles


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def phantom(size: int) -> np.ndarray:
    """Shepp-Logan phantom at ``size``², zero outside the inscribed circle (skimage's circle=True)."""
    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    offset = np.arange(size) - size // 2
    image[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0
    return image


@pytest.fixture(scope="module", params=[33, 65])
def case(request):
    size = request.param
    image = phantom(size)
    sino_sk = radon(image, THETA_DEG, circle=True)
    return size, image, sino_sk


# ---------------------------------------------------------------- agreement with scikit-image
def test_forward_matches_skimage(case):
    size, image, sino_sk = case
    op = Radon(size, np.deg2rad(THETA_DEG), line_integral="sampled")
    sino64 = op(torch.from_numpy(image))
    sino32 = op(torch.from_numpy(image).float())
    assert sino64.shape == (len(THETA_DEG), size)
    assert sino64.dtype == torch.float64 and sino32.dtype == torch.float32
    # Same bilinear sampling as skimage's warp: equal to rounding in float64; float32 within the 2 % spec.
    assert rel_err(sino64.numpy(), sino_sk.T) < 1e-6
    assert rel_err(sino32.numpy(), sino_sk.T) < 0.02
    # Joseph (the fast default) interpolates once per row instead of bilinearly per pixel step.
    joseph = Radon(size, np.deg2rad(THETA_DEG))(torch.from_numpy(image))
    assert rel_err(joseph.numpy(), sino_sk.T) < 0.01


@pytest.mark.parametrize("filter_name", FILTER_NAMES)
def test_fbp_matches_iradon(case, filter_name):
    size, image, sino_sk = case
    op = Radon(size, np.deg2rad(THETA_DEG))
    expected = iradon(sino_sk, THETA_DEG, filter_name=filter_name, circle=True)
    recon = op.fbp(torch.from_numpy(sino_sk.T.copy()), filter_name=filter_name)
    assert recon.shape == (size, size)
    assert rel_err(recon.numpy(), expected) < 1e-6
    # End to end (own projection then own FBP), float32: within the 5 % target, in practice ~1e-6.
    recon32 = op.fbp(op(torch.from_numpy(image).float()), filter_name=filter_name)
    assert rel_err(recon32.numpy(), expected) < 0.05


def test_even_size_matches_skimage():
    size = 32
    image = phantom(size)
    sino_sk = radon(image, THETA_DEG, circle=True)
    op = Radon(size, np.deg2rad(THETA_DEG), line_integral="sampled")
    # For even N scikit-image's circle=True rays stop at N // 2 - 1 past the centre, so they miss the
    # slivers of the pixels at distance N // 2 that bilinear rays reach; ours cross the whole disc.
    assert rel_err(op(torch.from_numpy(image)).numpy(), sino_sk.T) < 1e-3
    assert rel_err(op.fbp(torch.from_numpy(sino_sk.T.copy())).numpy(), iradon(sino_sk, THETA_DEG)) < 1e-6


def test_fbp_without_filter_matches_iradon_none():
    size = 33
    sino_sk = radon(phantom(size), THETA_DEG, circle=True)
    op = Radon(size, np.deg2rad(THETA_DEG))
    expected = iradon(sino_sk, THETA_DEG, filter_name=None)
    assert rel_err(op.fbp(torch.from_numpy(sino_sk.T.copy()), filter_name=None).numpy(), expected) < 1e-6


def test_filter_sinogram_is_linear_and_shape_preserving():
    op = Radon(17, np.linspace(0, np.pi, 6, endpoint=False))
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(6, 17, dtype=torch.float64, generator=gen)
    b = torch.rand(6, 17, dtype=torch.float64, generator=gen)
    fa, fb, fab = (op.filter_sinogram(s, "hann") for s in (a, b, 2 * a - b))
    assert fa.shape == a.shape
    torch.testing.assert_close(fab, 2 * fa - fb)
    # The ramp removes the mean of a constant projection almost entirely (zero response at DC).
    flat = op.filter_sinogram(torch.ones(6, 17, dtype=torch.float64))
    assert flat.abs().max() < 0.5


@pytest.mark.parametrize("det_spacing, det_count", [(0.5, 67), (2.0, 17)])
def test_det_spacing_keeps_fbp_scale(det_spacing, det_count):
    size = 33
    image = phantom(size)
    op = Radon(size, np.deg2rad(np.arange(0.0, 180.0, 2.0)), det_count=det_count, det_spacing=det_spacing)
    sino = op(torch.from_numpy(image))
    assert sino.shape == (90, det_count)
    recon = op.fbp(sino).numpy()
    # The reconstruction keeps the image's intensity scale whatever the detector sampling.
    assert recon.sum() / image.sum() == pytest.approx(1.0, abs=0.03)
    assert rel_err(recon, image) < 0.4


# ---------------------------------------------------------------- adjointness and gradients
@pytest.mark.parametrize("size, det_count, det_spacing", [(33, None, 1.0), (32, None, 1.0), (33, 50, 0.7)])
def test_backprojection_is_adjoint(size, det_count, det_spacing):
    op = Radon(size, np.linspace(0, np.pi, 20, endpoint=False), det_count=det_count, det_spacing=det_spacing)
    gen = torch.Generator().manual_seed(1)
    for draw in (torch.rand, torch.randn):
        x = draw(size, size, dtype=torch.float64, generator=gen)
        y = draw(20, op.det_count, dtype=torch.float64, generator=gen)
        lhs = (op(x) * y).sum().item()
        rhs = (x * op.backprojection(y)).sum().item()
        # Relative to the Cauchy-Schwarz bound, so zero-mean draws are not judged on cancellation.
        scale = (op(x).norm() * y.norm()).item()
        assert abs(lhs - rhs) / scale < 1e-12  # exact adjoint (float64 rounding)


def test_gradcheck_forward_backprojection_fbp():
    op = Radon(9, np.deg2rad([0.0, 37.0, 90.0, 141.0]))
    gen = torch.Generator().manual_seed(2)
    image = torch.rand(9, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    sino = torch.rand(4, 9, dtype=torch.float64, generator=gen, requires_grad=True)
    assert torch.autograd.gradcheck(op, (image,))
    assert torch.autograd.gradcheck(op.backprojection, (sino,))
    # fbp is linear as well; fast mode (random projections of the Jacobian) keeps this test quick.
    assert torch.autograd.gradcheck(lambda s: op.fbp(s, "shepp-logan"), (sino,), fast_mode=True)


def test_gradient_of_forward_is_backprojection():
    # d<A x, y>/dx = A^T y exactly: autograd of the forward is the explicit adjoint.
    op = Radon(33, np.linspace(0, np.pi, 30, endpoint=False))
    x = torch.zeros(33, 33, dtype=torch.float64, requires_grad=True)
    y = op(torch.from_numpy(phantom(33)))
    (op(x) * y).sum().backward()
    assert rel_err(x.grad.numpy(), op.backprojection(y).numpy()) < 1e-12


# ---------------------------------------------------------------- batching, dtypes, chunking
def test_batch_dims_match_single_images():
    size = 17
    op = Radon(size, np.linspace(0, np.pi, 8, endpoint=False))
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    sinos = op(images)
    assert sinos.shape == (2, 3, 8, size)
    torch.testing.assert_close(sinos[1, 2], op(images[1, 2]))
    back = op.backprojection(sinos)
    assert back.shape == (2, 3, size, size)
    torch.testing.assert_close(back[0, 1], op.backprojection(sinos[0, 1]))
    recon = op.fbp(sinos, "hamming")
    torch.testing.assert_close(recon[1, 0], op.fbp(sinos[1, 0], "hamming"))
    assert op(images[:0]).shape == (0, 3, 8, size)


def test_float64_and_float32_agree():
    size = 33
    op = Radon(size, np.deg2rad(THETA_DEG))
    image = torch.from_numpy(phantom(size))
    s64, s32 = op(image), op(image.float())
    assert s64.dtype == torch.float64 and s32.dtype == torch.float32
    assert rel_err(s32.numpy(), s64.numpy()) < 1e-5
    r64, r32 = op.fbp(s64), op.fbp(s32)
    assert r64.dtype == torch.float64 and r32.dtype == torch.float32
    assert rel_err(r32.numpy(), r64.numpy()) < 1e-4


def test_chunking_over_angles_gives_same_result(monkeypatch):
    size = 17
    op = Radon(size, np.linspace(0, np.pi, 10, endpoint=False))
    image = torch.rand(2, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    sino_whole, back_whole = op(image), op.backprojection(op(image))
    # Force about three angles per chunk.
    monkeypatch.setattr(core, "CHUNK_ELEMENTS", 3 * 2 * op.projector.samples_per_view)
    torch.testing.assert_close(op(image), sino_whole)
    torch.testing.assert_close(op.backprojection(sino_whole), back_whole)


def test_module_properties():
    op = Radon(33, [0.0, 0.5, 1.0], det_count=40, det_spacing=0.5)
    assert isinstance(op, torch.nn.Module)
    assert (op.resolution, op.n_angles, op.det_count, op.det_spacing) == (33, 3, 40, 0.5)
    assert op.angles.dtype == torch.float64
    torch.testing.assert_close(op.angles, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    if not torch_radon_available():
        assert op.backend == "torch"
    assert Radon(5, [0.0], backend="torch").backend == "torch"
    # Angles may be a tensor too; the input image is not modified.
    image = torch.rand(33, 33)
    before = image.clone()
    Radon(33, torch.tensor([0.1, 0.2]))(image)
    assert torch.equal(image, before)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    size = 33
    op = Radon(size, np.deg2rad(THETA_DEG), backend="torch")
    image = torch.from_numpy(phantom(size)).float()
    sino_cpu = op(image)
    op_cuda = op.to("cuda")
    image_cuda = image.cuda().requires_grad_(True)
    sino_cuda = op_cuda(image_cuda)
    assert sino_cuda.is_cuda
    assert rel_err(sino_cuda.detach().cpu().numpy(), sino_cpu.numpy()) < 1e-4
    recon = op_cuda.fbp(sino_cuda.detach())
    assert recon.is_cuda
    assert rel_err(recon.cpu().numpy(), op.to("cpu").fbp(sino_cpu).numpy()) < 1e-4
    sino_cuda.square().sum().backward()
    assert image_cuda.grad is not None and torch.isfinite(image_cuda.grad).all()


# ---------------------------------------------------------------- converters and validation
def test_skimage_converters_round_trip():
    size = 33
    sino_sk = radon(phantom(size), THETA_DEG, circle=True)
    sino, angles_rad = sinogram_from_skimage(sino_sk, THETA_DEG)
    assert sino.shape == (len(THETA_DEG), size) and sino.dtype == torch.float64
    np.testing.assert_allclose(angles_rad.numpy(), np.deg2rad(THETA_DEG))
    op = Radon(size, angles_rad)
    assert rel_err(op.fbp(sino).numpy(), iradon(sino_sk, THETA_DEG)) < 1e-6
    back, angles_deg = sinogram_to_skimage(sino, angles_rad)
    np.testing.assert_array_equal(back, sino_sk)
    np.testing.assert_allclose(angles_deg, THETA_DEG)
    # Batched (batch, det, angles) input, and float32 for non-float64 data.
    batch, _ = sinogram_from_skimage(np.stack([sino_sk, sino_sk]).astype(np.float32), THETA_DEG)
    assert batch.shape == (2, len(THETA_DEG), size) and batch.dtype == torch.float32


def test_validate_sinogram_accepts_good_input():
    validate_sinogram(np.zeros((45, 33)), THETA_DEG, layout="torch")
    validate_sinogram(torch.zeros(2, 33, 45), THETA_DEG, layout="skimage")


@pytest.mark.parametrize(
    "sinogram, angles, layout, message",
    [
        (np.full((33, 45), np.nan), THETA_DEG, "skimage", "non-finite"),
        (np.zeros(45), THETA_DEG, "torch", "must be 2-D"),
        (np.zeros((1, 2, 45, 33)), THETA_DEG, "torch", "must be 2-D"),
        (np.zeros((0, 45)), THETA_DEG, "skimage", "empty"),
        (np.zeros((33, 45)), [0.0, np.inf] + [1.0] * 43, "skimage", "angles contains 1 non-finite"),
        (np.zeros((33, 45)), THETA_DEG, "columns", "unknown layout"),
        (np.zeros((45, 33)), THETA_DEG[:30], "torch", "45 angle rows but 30 angles were given"),
    ],
)
def test_validate_sinogram_errors(sinogram, angles, layout, message):
    with pytest.raises(ValueError, match=message) as info:
        validate_sinogram(sinogram, angles, layout=layout)
    assert "\n" not in str(info.value)


def test_validate_sinogram_mismatch_message_names_the_fix():
    with pytest.raises(ValueError) as info:
        validate_sinogram(np.zeros((33, 60)), THETA_DEG, layout="skimage")
    assert str(info.value) == (
        "sinogram has 60 angle columns but 45 angles were given; pass the angles used to acquire it "
        "(layout='skimage' expects detectors × angles)"
    )


def test_converters_reject_bad_sinograms():
    with pytest.raises(ValueError, match="60 angle columns but 45 angles"):
        sinogram_from_skimage(np.zeros((33, 60)), THETA_DEG)
    with pytest.raises(ValueError, match="non-finite"):
        sinogram_to_skimage(torch.full((45, 33), float("nan")), np.deg2rad(THETA_DEG))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resolution": 0, "angles": [0.0]}, "resolution must be a positive integer"),
        ({"resolution": 8.5, "angles": [0.0]}, "resolution must be a positive integer"),
        ({"resolution": 8, "angles": [0.0, float("nan")]}, "non-finite"),
        ({"resolution": 8, "angles": np.zeros((2, 2))}, "must be 1-D"),
        ({"resolution": 8, "angles": []}, "empty"),
        ({"resolution": 8, "angles": [0.0], "det_count": 0}, "det_count must be a positive integer"),
        ({"resolution": 8, "angles": [0.0], "det_spacing": 0.0}, "det_spacing must be a positive"),
        ({"resolution": 8, "angles": [0.0], "backend": "astra"}, "unknown backend"),
    ],
)
def test_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Radon(**kwargs)


@pytest.mark.skipif(torch_radon_available(), reason="torch_radon is installed here")
def test_torch_radon_backend_missing_is_a_clear_error():
    with pytest.raises(ValueError, match="needs the torch_radon package"):
        Radon(8, [0.0], backend="torch_radon")


def test_operator_input_errors():
    op = Radon(9, [0.0, 1.0])
    with pytest.raises(ValueError, match=r"image must have shape \(\.\.\., 9, 9\).*got \(8, 9\)"):
        op(torch.zeros(8, 9))
    with pytest.raises(TypeError, match="torch.Tensor"):
        op(np.zeros((9, 9)))
    with pytest.raises(TypeError, match="must be real"):
        op(torch.zeros(9, 9, dtype=torch.complex64))
    with pytest.raises(ValueError, match=r"sinogram must have shape \(\.\.\., 2, 9\)"):
        op.backprojection(torch.zeros(3, 9))
    with pytest.raises(ValueError, match=r"sinogram must have shape \(\.\.\., 2, 9\)"):
        op.fbp(torch.zeros(9, 2))
    with pytest.raises(ValueError, match="unknown filter_name 'ram'"):
        op.filter_sinogram(torch.zeros(2, 9), "ram")
