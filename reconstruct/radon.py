"""Differentiable parallel-beam Radon transform with torch-radon's API shape.

:class:`Radon` projects ``(..., N, N)`` images to angles-first sinograms ``(..., n_angles, det_count)``
and back, and reconstructs by filtered back-projection (FBP). Two backends:

- ``"torch"``: pure PyTorch, runs anywhere (CPU, CUDA), float32/float64, differentiable through
  autograd. The forward projection rotates the sampling grid with ``grid_sample`` (bilinear) and
  sums along the rays; the back-projection is pixel-driven linear interpolation of each projection
  at the pixel's detector coordinate, which is the adjoint of the forward projection up to
  interpolation error.
- ``"torch_radon"``: wraps ``torch_radon.Radon`` (CUDA only, not on PyPI) for CUDA float32/float16
  tensors when that package is importable; everything else goes through the torch backend.
  torch-radon's own geometry conventions apply on that path (not checked against scikit-image
  here, the package cannot be installed from PyPI); ``backend="torch"`` gives the geometry below
  on every device. :meth:`Radon.fbp` always uses the torch back-projection.

Geometry follows ``skimage.transform.radon(image, theta=degrees, circle=True)`` so results can be
compared with scikit-image directly (only the layout differs, see :func:`sinogram_from_skimage`):

- the rotation centre is pixel ``(N // 2, N // 2)`` and the detector centre is ``det_count // 2``;
- with ``x = col - N // 2`` and ``y = row - N // 2`` a pixel lands on detector coordinate
  ``t = x cos(theta) - y sin(theta)`` (i.e. ``x cos + y sin`` with the y axis pointing up);
- at ``theta = 0`` the projection sums the image over its rows (axis -2);
- the ray step is one pixel, detector positions are ``(j - det_count // 2) * det_spacing``.

Angles are in radians (torch-radon's convention); scikit-image uses degrees.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "FILTER_NAMES",
    "LAYOUTS",
    "Radon",
    "sinogram_from_skimage",
    "sinogram_to_skimage",
    "torch_radon_available",
    "validate_sinogram",
]

#: Frequency-domain filters accepted by :meth:`Radon.filter_sinogram` (scikit-image's iradon names);
#: ``None`` means no filtering.
FILTER_NAMES: tuple[str, ...] = ("ramp", "shepp-logan", "cosine", "hamming", "hann")

#: Sinogram layouts understood by :func:`validate_sinogram`: ``"torch"`` is angles × detectors
#: (torch-radon, :class:`Radon`), ``"skimage"`` is detectors × angles (``skimage.transform.radon``).
LAYOUTS: tuple[str, ...] = ("torch", "skimage")

_BACKENDS = ("auto", "torch", "torch_radon")

# Upper bound on the elements of one interpolation chunk (about 128 MB in float32): keeps memory
# flat for large images / many angles while still batching many angles per kernel call.
_CHUNK_ELEMENTS = 1 << 25


def _import_torch_radon() -> Any | None:
    try:
        import torch_radon  # type: ignore[import-not-found]
    except Exception:  # not installed, or its CUDA extension fails to load
        return None
    return torch_radon


def torch_radon_available() -> bool:
    """Whether the optional ``torch_radon`` CUDA package can be imported."""
    return _import_torch_radon() is not None


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _as_angle_array(angles: Any, name: str = "angles") -> np.ndarray:
    """Angles as a finite 1-D float64 numpy array, or a one-line ValueError."""
    if isinstance(angles, torch.Tensor):
        angles = angles.detach().cpu().numpy()
    try:
        arr = np.asarray(angles, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a 1-D sequence of numbers; got {type(angles).__name__}") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per projection); got shape {_shape_str(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty; give at least one projection angle")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains {int((~np.isfinite(arr)).sum())} non-finite values (NaN/inf)")
    return arr


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return int(value)


def _padded_filter_size(det_count: int) -> int:
    """FFT length used by iradon for a circle=True sinogram with ``det_count`` detectors.

    iradon first pads the sinogram to the image diagonal, then to the next power of two of twice
    that (at least 64). The ramp result does not depend on the length once it is >= 2 * det_count,
    but the windowed filters do, so the same length is used to match iradon exactly.
    """
    diagonal = int(math.ceil(math.sqrt(2.0) * det_count))
    return max(64, 1 << int(math.ceil(math.log2(2 * diagonal))))


@lru_cache(maxsize=32)
def _fourier_filter(size: int, filter_name: str) -> np.ndarray:
    """Real frequency response (length ``size // 2 + 1``, rfft layout) of the named FBP filter.

    The ramp is built as the DFT of the band-limited spatial ramp kernel (Kak & Slaney, ch. 3,
    eq. 61): h[0] = 1/4, h[k odd] = -1/(pi k)^2, h[k even] = 0, which avoids the DC bias of a
    sampled |omega|. Windows then taper the high frequencies.
    """
    lag = np.arange(size)
    lag = np.minimum(lag, size - lag)  # circular distance: the kernel is symmetric
    kernel = np.zeros(size)
    kernel[0] = 0.25
    odd = lag % 2 == 1
    kernel[odd] = -1.0 / (np.pi * lag[odd]) ** 2
    response = 2.0 * np.real(np.fft.fft(kernel))
    freq = np.fft.fftfreq(size)  # cycles per sample in [-0.5, 0.5)
    if filter_name == "shepp-logan":
        omega = np.pi * freq[1:]
        response[1:] *= np.sin(omega) / omega
    elif filter_name == "cosine":
        response *= np.abs(np.cos(np.pi * freq))
    elif filter_name == "hamming":
        response *= np.fft.fftshift(np.hamming(size))
    elif filter_name == "hann":
        response *= np.fft.fftshift(np.hanning(size))
    # The shifted numpy windows are off by one sample between +f and -f; iradon keeps the real part
    # of the inverse FFT, which is the same as filtering with the symmetrised response used here.
    response = 0.5 * (response + np.roll(response[::-1], 1))
    return response[: size // 2 + 1].copy()


def _check_filter_name(filter_name: str | None) -> None:
    if filter_name is not None and filter_name not in FILTER_NAMES:
        raise ValueError(
            f"unknown filter_name {filter_name!r}; choose one of {', '.join(FILTER_NAMES)} or None"
        )


class Radon(torch.nn.Module):
    """Parallel-beam Radon transform of square images, differentiable, batched over leading dims.

    Args:
        resolution: side length N of the square images, in pixels.
        angles: projection angles in radians (1-D array-like or tensor).
        det_count: number of detector bins; defaults to ``resolution``.
        det_spacing: detector bin width in pixels.
        backend: ``"auto"`` (``"torch_radon"`` when importable, else ``"torch"``), ``"torch"`` or
            ``"torch_radon"``. The torch_radon backend is used only for CUDA float32/float16 inputs.

    Example:
        >>> radon = Radon(65, np.deg2rad(np.arange(0.0, 180.0, 3.0)))
        >>> sino = radon(image)            # (..., 60, 65)
        >>> recon = radon.fbp(sino)        # (..., 65, 65), matches skimage iradon
    """

    def __init__(
        self,
        resolution: int,
        angles: Any,
        det_count: int | None = None,
        det_spacing: float = 1.0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.resolution = _positive_int(resolution, "resolution")
        self.det_count = self.resolution if det_count is None else _positive_int(det_count, "det_count")
        if isinstance(det_spacing, bool) or not isinstance(
            det_spacing, (int, float, np.floating, np.integer)
        ):
            raise ValueError(f"det_spacing must be a positive number; got {det_spacing!r}")
        if not (math.isfinite(det_spacing) and det_spacing > 0):
            raise ValueError(f"det_spacing must be a positive finite number; got {det_spacing!r}")
        self.det_spacing = float(det_spacing)
        angle_array = _as_angle_array(angles)
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")

        torch_radon = _import_torch_radon() if backend in ("auto", "torch_radon") else None
        if backend == "torch_radon" and torch_radon is None:
            raise ValueError(
                "backend='torch_radon' needs the torch_radon package (CUDA, built from source, not on PyPI); "
                "use backend='torch' or 'auto'"
            )
        self.backend = "torch_radon" if torch_radon is not None else "torch"
        self._torch_radon = None
        if torch_radon is not None:
            # torch-radon v1 API: Radon(resolution, angles, det_count, det_spacing, clip_to_circle)
            self._torch_radon = torch_radon.Radon(
                self.resolution, angle_array, det_count=self.det_count, det_spacing=self.det_spacing
            )

        # Buffers follow .to(device); trig is precomputed in float64 and cast per call.
        self.register_buffer("angles", torch.from_numpy(angle_array.copy()), persistent=False)
        self.register_buffer("_cos", torch.from_numpy(np.cos(angle_array)), persistent=False)
        self.register_buffer("_sin", torch.from_numpy(np.sin(angle_array)), persistent=False)

    @property
    def n_angles(self) -> int:
        """Number of projection angles."""
        return int(self.angles.numel())

    def extra_repr(self) -> str:
        return (
            f"resolution={self.resolution}, n_angles={self.n_angles}, det_count={self.det_count}, "
            f"det_spacing={self.det_spacing}, backend={self.backend!r}"
        )

    # ------------------------------------------------------------------ input checks
    def _check_tensor(self, value: Any, name: str, trailing: tuple[int, int], what: str) -> None:
        if not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{name} must be a torch.Tensor; got {type(value).__name__} (wrap it with torch.as_tensor)"
            )
        if not value.is_floating_point():
            raise TypeError(f"{name} must be floating point; got {value.dtype} (convert with .float())")
        if value.ndim < 2 or tuple(value.shape[-2:]) != trailing:
            raise ValueError(
                f"{name} must have shape (..., {trailing[0]}, {trailing[1]}) ({what}); "
                f"got {_shape_str(value.shape)}"
            )

    def _use_torch_radon(self, value: torch.Tensor) -> bool:
        return (
            self._torch_radon is not None and value.is_cuda and value.dtype in (torch.float32, torch.float16)
        )

    def _trig(self, start: int, stop: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self._cos[start:stop].to(device=like.device, dtype=like.dtype)
        sin = self._sin[start:stop].to(device=like.device, dtype=like.dtype)
        return cos, sin

    # ------------------------------------------------------------------ operators
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Project images to sinograms.

        Args:
            image: ``(..., resolution, resolution)`` float tensor.

        Returns:
            Sinogram ``(..., n_angles, det_count)``: line integrals (ray step 1 pixel).
        """
        n = self.resolution
        self._check_tensor(image, "image", (n, n), "square images of the Radon resolution")
        lead = image.shape[:-2]
        if self._use_torch_radon(image):
            flat = image.reshape(-1, n, n)
            return self._torch_radon.forward(flat).reshape(*lead, self.n_angles, self.det_count)

        n_angles, n_det = self.n_angles, self.det_count
        # Leading dims become channels of one grid_sample call: every channel shares the grid, so
        # the batch costs no grid copies.
        channels = image.reshape(1, -1, n, n)
        batch = channels.shape[1]
        if batch == 0:
            return image.new_zeros((*lead, n_angles, n_det))

        centre = float(n // 2)
        ray = torch.arange(n, device=image.device, dtype=image.dtype) - centre  # along each ray
        det = (
            torch.arange(n_det, device=image.device, dtype=image.dtype) - float(n_det // 2)
        ) * self.det_spacing
        ray = ray.view(1, n, 1)
        det = det.view(1, 1, n_det)

        per_angle = batch * n * n_det
        chunk = max(1, _CHUNK_ELEMENTS // per_angle)
        pieces = []
        for start in range(0, n_angles, chunk):
            stop = min(start + chunk, n_angles)
            cos, sin = self._trig(start, stop, image)
            cos, sin = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
            # Sample point of (detector t, ray s): rotate (t, s) by theta about the centre, in pixels.
            col = centre + cos * det + sin * ray
            row = centre - sin * det + cos * ray
            # align_corners=False normalisation maps pixel index p to (2p + 1) / n - 1 (valid for n = 1 too).
            grid = torch.stack(((2.0 * col + 1.0) / n - 1.0, (2.0 * row + 1.0) / n - 1.0), dim=-1)
            grid = grid.reshape(1, (stop - start) * n, n_det, 2)
            sampled = F.grid_sample(
                channels, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )
            pieces.append(sampled.view(batch, stop - start, n, n_det).sum(dim=2))
        sinogram = pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
        return sinogram.reshape(*lead, n_angles, n_det)

    def _backproject(self, padded: torch.Tensor, ray_coverage: bool) -> torch.Tensor:
        """Sum over angles of each projection linearly interpolated at the pixel's detector coordinate.

        ``padded`` is ``(..., n_angles, det_count + 2)``: the sinogram with one extra bin on each side,
        the values just off the detector. Indices further out clamp onto those bins.

        With ``ray_coverage`` each term is weighted by how much of the pixel the forward rays reach:
        the forward samples each ray only at ``resolution`` points, so at oblique angles the image
        corners are not seen, and the exact adjoint gives them no back-projection either. FBP skips
        the weight (like iradon); it only changes pixels outside the inscribed circle.
        """
        n, n_angles, n_det = self.resolution, self.n_angles, self.det_count
        lead = padded.shape[:-2]
        padded = padded.reshape(-1, n_angles, n_det + 2)
        batch = padded.shape[0]
        if batch == 0:
            return padded.new_zeros((*lead, n, n))
        centre = float(n // 2)
        coords = torch.arange(n, device=padded.device, dtype=padded.dtype) - centre
        x = coords.view(1, 1, n)  # column offset
        y = coords.view(1, n, 1)  # row offset
        out = padded.new_zeros((batch, n * n))
        per_angle = batch * n * n
        chunk = max(1, _CHUNK_ELEMENTS // per_angle)
        for start in range(0, n_angles, chunk):
            stop = min(start + chunk, n_angles)
            cos, sin = self._trig(start, stop, padded)
            cos, sin = cos.view(-1, 1, 1), sin.view(-1, 1, 1)
            t = x * cos - y * sin
            index = (t / self.det_spacing + float(n_det // 2) + 1.0).reshape(1, stop - start, n * n)
            index = index.clamp(0.0, float(n_det + 1))
            lower = index.floor().clamp(max=float(n_det))
            weight = index - lower
            lower = lower.long().expand(batch, -1, -1)
            rows = padded[:, start:stop]
            value = torch.gather(rows, 2, lower) * (1.0 - weight) + torch.gather(rows, 2, lower + 1) * weight
            if ray_coverage:
                # Position along the ray; ray samples sit at integers in [-centre, n - 1 - centre] and
                # bilinear weights reach one pixel further, so coverage ramps 1 -> 0 over that pixel.
                along = (x * sin + y * cos).reshape(1, stop - start, n * n)
                value = value * torch.minimum(along + centre + 1.0, n - centre - along).clamp(0.0, 1.0)
            out = out + value.sum(dim=1)
        return out.reshape(*lead, n, n)

    def backprojection(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Unfiltered back-projection, the adjoint of :meth:`forward` up to interpolation.

        Args:
            sinogram: ``(..., n_angles, det_count)`` float tensor.

        Returns:
            ``(..., resolution, resolution)`` image. ``<forward(x), y> ≈ <x, backprojection(y)>``.
        """
        self._check_tensor(
            sinogram, "sinogram", (self.n_angles, self.det_count), "angles × detectors, torch-radon layout"
        )
        if self._use_torch_radon(sinogram):
            lead = sinogram.shape[:-2]
            flat = sinogram.reshape(-1, self.n_angles, self.det_count)
            return self._torch_radon.backprojection(flat).reshape(*lead, self.resolution, self.resolution)
        # One zero bin on each side: the value ramps to zero over one bin past the detector edge, like
        # the zero padding of the forward grid_sample. The forward samples rays on a lattice of
        # det_spacing × 1 pixels, so its adjoint carries 1/det_spacing.
        return self._backproject(F.pad(sinogram, (1, 1)), ray_coverage=True) / self.det_spacing

    def filter_sinogram(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        """Filter each projection along the detector axis in the frequency domain (FBP filter).

        The projections are zero-padded to iradon's FFT length (a power of two >= 2 * det_count) so
        the result equals iradon's filtering step; values are divided by ``det_spacing`` so the
        filtered sinogram is in physical (per-pixel) units.

        Args:
            sinogram: ``(..., n_angles, det_count)`` float tensor.
            filter_name: one of :data:`FILTER_NAMES`, or ``None`` for no filtering.

        Returns:
            Filtered sinogram, same shape and dtype.
        """
        _check_filter_name(filter_name)
        self._check_tensor(
            sinogram, "sinogram", (self.n_angles, self.det_count), "angles × detectors, torch-radon layout"
        )
        return self._filter(sinogram, filter_name, edge_bins=False)

    def _filter(self, sinogram: torch.Tensor, filter_name: str | None, edge_bins: bool) -> torch.Tensor:
        """Filtered sinogram; with ``edge_bins`` also the filter's output one bin past each edge."""
        if filter_name is None:
            filtered = F.pad(sinogram, (1, 1)) if edge_bins else sinogram
            return filtered / self.det_spacing
        size = _padded_filter_size(self.det_count)
        response = torch.from_numpy(_fourier_filter(size, filter_name)).to(
            device=sinogram.device, dtype=sinogram.dtype
        )
        spectrum = torch.fft.rfft(sinogram, n=size, dim=-1) * response
        full = torch.fft.irfft(spectrum, n=size, dim=-1)
        if edge_bins:
            # The FFT length is >= 2 * det_count, so bin size - 1 is detector -1 without wrap-around.
            filtered = torch.cat((full[..., -1:], full[..., : self.det_count + 1]), dim=-1)
        else:
            filtered = full[..., : self.det_count]
        return filtered / self.det_spacing

    def fbp(
        self, sinogram: torch.Tensor, filter_name: str | None = "ramp", circle: bool = True
    ) -> torch.Tensor:
        """Filtered back-projection, scaled like ``skimage.transform.iradon``.

        Args:
            sinogram: ``(..., n_angles, det_count)`` float tensor.
            filter_name: one of :data:`FILTER_NAMES`, or ``None``.
            circle: zero the pixels outside the inscribed circle (radius ``resolution // 2``), as
                iradon does with ``circle=True``.

        Returns:
            ``(..., resolution, resolution)`` reconstruction.
        """
        _check_filter_name(filter_name)
        self._check_tensor(
            sinogram, "sinogram", (self.n_angles, self.det_count), "angles × detectors, torch-radon layout"
        )
        # Always the torch back-projection, on every backend: it reproduces iradon, including the
        # filtered values just past the detector edge that iradon interpolates into (its sinogram
        # is padded before filtering). 1/det_spacing is already applied by the filter.
        filtered = self._filter(sinogram, filter_name, edge_bins=True)
        image = self._backproject(filtered, ray_coverage=False)
        image = image * (math.pi / (2 * self.n_angles))
        if circle:
            n = self.resolution
            offset = torch.arange(n, device=image.device) - n // 2
            inside = (offset.view(-1, 1) ** 2 + offset.view(1, -1) ** 2) <= (n // 2) ** 2
            image = image * inside.to(image.dtype)
        return image


# ---------------------------------------------------------------------- layout helpers
def validate_sinogram(sinogram: Any, angles: Any, layout: str = "torch") -> None:
    """Check a measured sinogram before reconstruction; raise a one-line ValueError on problems.

    Args:
        sinogram: numpy array or tensor, 2-D or 3-D (leading batch axis).
        angles: the projection angles (any unit), one per projection.
        layout: ``"torch"`` (angles × detectors) or ``"skimage"`` (detectors × angles).

    Raises:
        ValueError: unknown layout, wrong rank, empty, bad angles, angle-count mismatch, or
            non-finite values.
    """
    if layout not in LAYOUTS:
        raise ValueError(
            f"unknown layout {layout!r}; "
            "choose 'torch' (angles × detectors) or 'skimage' (detectors × angles)"
        )
    expects = "angles × detectors" if layout == "torch" else "detectors × angles"
    if isinstance(sinogram, torch.Tensor):
        values = sinogram.detach()
        shape = tuple(values.shape)
        n_bad = (
            int((~torch.isfinite(values)).sum()) if values.is_floating_point() or values.is_complex() else 0
        )
    else:
        try:
            values = np.asarray(sinogram)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"sinogram must be an array or tensor; got {type(sinogram).__name__}") from exc
        if values.dtype == object or not np.issubdtype(values.dtype, np.number):
            raise ValueError(f"sinogram must hold numbers; got dtype {values.dtype}")
        shape = values.shape
        n_bad = int((~np.isfinite(values)).sum())
    if len(shape) not in (2, 3):
        raise ValueError(
            f"sinogram must be 2-D ({expects}) or 3-D (batch × {expects}) for layout={layout!r}; "
            f"got shape {_shape_str(shape)}"
        )
    if 0 in shape:
        raise ValueError(f"sinogram is empty (shape {_shape_str(shape)})")
    angle_array = _as_angle_array(angles)
    n_sino_angles = shape[-2] if layout == "torch" else shape[-1]
    if n_sino_angles != angle_array.size:
        kind = "rows" if layout == "torch" else "columns"
        raise ValueError(
            f"sinogram has {n_sino_angles} angle {kind} but {angle_array.size} angles were given; "
            f"pass the angles used to acquire it (layout={layout!r} expects {expects})"
        )
    if n_bad:
        raise ValueError(
            f"sinogram contains {n_bad} non-finite values (NaN/inf); clean or mask them before reconstruction"
        )


def sinogram_from_skimage(sino_det_by_angle: Any, angles_deg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Convert a scikit-image sinogram (detectors × angles, degrees) to :class:`Radon`'s convention.

    Args:
        sino_det_by_angle: ``(det, n_angles)`` or ``(batch, det, n_angles)`` array or tensor, as
            returned by ``skimage.transform.radon``.
        angles_deg: the ``theta`` given to scikit-image, in degrees.

    Returns:
        ``(sinogram, angles_rad)``: angles-first float tensor ``(..., n_angles, det)`` (float64 input
        stays float64, anything else becomes float32) and float64 angles in radians.
    """
    validate_sinogram(sino_det_by_angle, angles_deg, layout="skimage")
    sino = torch.as_tensor(
        np.asarray(sino_det_by_angle)
        if not isinstance(sino_det_by_angle, torch.Tensor)
        else sino_det_by_angle.detach()
    )
    if sino.dtype != torch.float64:
        sino = sino.to(torch.float32)
    angles_rad = torch.from_numpy(np.deg2rad(_as_angle_array(angles_deg, "angles_deg")))
    # clone: never hand back a view of the caller's array (a (det, 1) transpose would be one).
    return sino.transpose(-1, -2).clone(memory_format=torch.contiguous_format), angles_rad


def sinogram_to_skimage(sinogram: Any, angles_rad: Any) -> tuple[np.ndarray, np.ndarray]:
    """Convert an angles-first sinogram (radians) to scikit-image's convention.

    Args:
        sinogram: ``(n_angles, det)`` or ``(batch, n_angles, det)`` tensor or array.
        angles_rad: projection angles in radians.

    Returns:
        ``(sino_det_by_angle, angles_deg)`` numpy arrays, ready for ``skimage.transform.iradon``.
    """
    validate_sinogram(sinogram, angles_rad, layout="torch")
    values = sinogram.detach().cpu().numpy() if isinstance(sinogram, torch.Tensor) else np.asarray(sinogram)
    angles_deg = np.rad2deg(_as_angle_array(angles_rad, "angles_rad"))
    return np.swapaxes(values, -1, -2).copy(), angles_deg
