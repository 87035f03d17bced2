"""Differentiable parallel-beam Radon transform with torch-radon's (v1) API.

:class:`Radon` projects ``(..., N, N)`` images to angles-first sinograms ``(..., n_angles, det_count)``
and back, and reconstructs by filtered back-projection (FBP). It is
:class:`reconstruct.projectors.ParallelBeam2D` with unit pixels, torch-radon's argument names and
scikit-image's geometry:

- the rotation centre is pixel ``(N // 2, N // 2)`` and the detector centre is ``det_count // 2``;
- with ``x = col - N // 2`` and ``y = N // 2 - row`` a pixel lands on detector coordinate
  ``t = x cos(theta) + y sin(theta)``; at ``theta = 0`` the projection sums the image over its rows;
- rays are sampled every pixel across the whole (padded) square, so ``clip_to_circle=False`` sees
  the corners (``skimage.transform.radon(circle=False)``); ``clip_to_circle=True`` projects only the
  inscribed disc (``circle=True``);
- :meth:`Radon.backprojection` (alias :meth:`Radon.backward`) is the exact adjoint of
  :meth:`Radon.forward`; :meth:`Radon.filter_sinogram` carries torch-radon's ``pi / (2 n_angles)``
  factor so ``radon.backprojection(radon.filter_sinogram(sino))`` reconstructs the image, and
  :meth:`Radon.fbp` reproduces ``skimage.transform.iradon`` to rounding.

Angles are in radians (torch-radon's convention); scikit-image uses degrees. Integer and boolean
images are cast as scikit-image does (``img_as_float``: integers scaled by their dtype's maximum).
When the real ``torch_radon`` (v1 API, CUDA) is importable it is used for CUDA float32/float16
tensors only (:mod:`reconstruct.projectors.backends`); every other input uses the pure-PyTorch path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .projectors._matrix import interpolation_matrix, sparse_apply
from .projectors.backends import import_torch_radon, torch_radon_v1
from .projectors.filters import FILTER_NAMES, check_filter_name, fourier_filter, padded_size
from .projectors.geometry import ParallelBeam2D

__all__ = [
    "FILTER_NAMES",
    "LAYOUTS",
    "Radon",
    "as_float_image",
    "sinogram_from_skimage",
    "sinogram_to_skimage",
    "torch_radon_available",
    "validate_sinogram",
]

#: Sinogram layouts understood by :func:`validate_sinogram`: ``"torch"`` is angles × detectors
#: (torch-radon, :class:`Radon`), ``"skimage"`` is detectors × angles (``skimage.transform.radon``).
LAYOUTS: tuple[str, ...] = ("torch", "skimage")

_BACKENDS = ("auto", "torch", "torch_radon")


def torch_radon_available() -> bool:
    """Whether the optional ``torch_radon`` CUDA package (v1 API) can be imported."""
    return torch_radon_v1(import_torch_radon()) is not None


def _shape_str(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(s)) for s in shape) + ")"


def _as_angle_array(angles: Any, name: str = "angles") -> np.ndarray:
    from .projectors._checks import angles_array

    if isinstance(angles, tuple) and len(angles) == 3:
        angles = list(angles)  # v1 and the task layouts: three explicit angles, never a range
    return angles_array(angles, name)


def as_float_image(image: torch.Tensor) -> torch.Tensor:
    """Floating-point images unchanged; integers / booleans cast as scikit-image's ``img_as_float``."""
    if image.is_floating_point():
        return image
    if image.dtype == torch.bool:
        return image.to(torch.float64)
    info = torch.iinfo(image.dtype)
    values = image.to(torch.float64)
    return values / info.max  # unsigned to [0, 1], signed to [-1, 1], as skimage


class Radon(torch.nn.Module):
    """Parallel-beam Radon transform of square images (torch-radon v1 ``Radon``), batched, differentiable.

    Args:
        resolution: side length N of the square images, in pixels.
        angles: projection angles in radians (1-D array-like or tensor).
        det_count: number of detector bins; ``None`` or ``<= 0`` (torch-radon's ``-1``) means ``resolution``.
        det_spacing: detector bin width in pixels.
        clip_to_circle: project only the inscribed disc (scikit-image ``circle=True``).
        backend: ``"auto"`` (the real torch_radon for CUDA float32/float16 when importable), ``"torch"``
            or ``"torch_radon"``.
        line_integral: ``"joseph"`` (default: a cached sparse matrix, the fast one) or ``"sampled"``
            (bilinear samples one pixel apart, equal to ``skimage.transform.radon`` to rounding; Joseph
            differs from it by 0.1–1 % on sharp images), see :data:`reconstruct.projectors.LINE_INTEGRALS`.
    """

    def __init__(self, resolution: int, angles: Any, det_count: int | None = None, det_spacing: float = 1.0,
                 clip_to_circle: bool = False, backend: str = "auto", line_integral: str = "joseph") -> None:
        super().__init__()
        if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer; got {resolution!r}")
        self.resolution = int(resolution)
        if det_count is None or (not isinstance(det_count, bool) and det_count == -1):
            det_count = self.resolution  # torch-radon's default -1
        if isinstance(det_count, bool) or not isinstance(det_count, (int, np.integer)) or det_count < 1:
            raise ValueError(f"det_count must be a positive integer (or -1 for the resolution); got {det_count!r}")
        self.det_count = int(det_count)
        if isinstance(det_spacing, bool) or not isinstance(det_spacing, (int, float, np.floating, np.integer)) \
                or not (math.isfinite(det_spacing) and det_spacing > 0):
            raise ValueError(f"det_spacing must be a positive finite number; got {det_spacing!r}")
        self.det_spacing = float(det_spacing)
        self.clip_to_circle = bool(clip_to_circle)
        angle_array = _as_angle_array(angles)
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(_BACKENDS)}")
        module = torch_radon_v1(import_torch_radon()) if backend in ("auto", "torch_radon") else None
        if backend == "torch_radon" and module is None:
            raise ValueError("backend='torch_radon' needs the torch_radon package with its v1 Radon class (CUDA, "
                             "built from source, not on PyPI); use backend='torch' or 'auto'")
        self.backend = "torch_radon" if module is not None else "torch"
        self._torch_radon = None
        if module is not None:
            try:
                self._torch_radon = module.Radon(self.resolution, angle_array, det_count=self.det_count,
                                                 det_spacing=self.det_spacing, clip_to_circle=self.clip_to_circle)
            except Exception:  # a broken install must never break the CPU path
                self._torch_radon, self.backend = None, "torch"
        self.projector = ParallelBeam2D((self.resolution, self.resolution), angle_array, self.det_count,
                                        self.det_spacing, clip_to_circle=self.clip_to_circle,
                                        line_integral=line_integral)
        self.register_buffer("angles", torch.from_numpy(angle_array.copy()), persistent=False)
        self.register_buffer("_cos", torch.from_numpy(np.cos(angle_array)), persistent=False)
        self.register_buffer("_sin", torch.from_numpy(np.sin(angle_array)), persistent=False)

    @property
    def n_angles(self) -> int:
        """Number of projection angles."""
        return int(self.angles.numel())

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, n_angles={self.n_angles}, det_count={self.det_count}, "
                f"det_spacing={self.det_spacing}, clip_to_circle={self.clip_to_circle}, backend={self.backend!r}")

    # ------------------------------------------------------------------ input checks
    def _check_tensor(self, value: Any, name: str, trailing: tuple[int, int], what: str) -> torch.Tensor:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__} (wrap it with torch.as_tensor)")
        if value.is_complex():
            raise TypeError(f"{name} must be real; got {value.dtype}")
        if not value.is_floating_point():
            value = as_float_image(value)
        if value.ndim < 2 or tuple(value.shape[-2:]) != trailing:
            raise ValueError(f"{name} must have shape (..., {trailing[0]}, {trailing[1]}) ({what}); "
                             f"got {_shape_str(value.shape)}")
        return value

    def _use_torch_radon(self, value: torch.Tensor) -> bool:
        return self._torch_radon is not None and value.is_cuda and value.dtype in (torch.float32, torch.float16)

    def _trig(self, start: int, stop: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self._cos[start:stop].to(device=like.device, dtype=like.dtype)
        sin = self._sin[start:stop].to(device=like.device, dtype=like.dtype)
        return cos, sin

    def _sino(self, sinogram: Any) -> torch.Tensor:
        return self._check_tensor(sinogram, "sinogram", (self.n_angles, self.det_count),
                                  "angles × detectors, torch-radon layout")

    # ------------------------------------------------------------------ operators
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """Line integrals (ray step 1 pixel) of ``(..., N, N)`` images: ``(..., n_angles, det_count)``."""
        n = self.resolution
        image = self._check_tensor(image, "image", (n, n), "square images of the Radon resolution")
        if self._use_torch_radon(image):
            lead = image.shape[:-2]
            flat = image.reshape(-1, n, n).contiguous()
            return self._torch_radon.forward(flat).reshape(*lead, self.n_angles, self.det_count)
        return self.projector(image)

    def backprojection(self, sinogram: torch.Tensor) -> torch.Tensor:
        """The exact adjoint of :meth:`forward`: ``<forward(x), y> = <x, backprojection(y)>``."""
        sinogram = self._sino(sinogram)
        if self._use_torch_radon(sinogram):
            lead = sinogram.shape[:-2]
            flat = sinogram.reshape(-1, self.n_angles, self.det_count).contiguous()
            return self._torch_radon.backprojection(flat).reshape(*lead, self.resolution, self.resolution)
        return self.projector.adjoint(sinogram)

    def backward(self, sinogram: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`backprojection` (torch-radon's name)."""
        return self.backprojection(sinogram)

    def filter_sinogram(self, sinogram: torch.Tensor, filter_name: str | None = "ramp") -> torch.Tensor:
        """torch-radon's FBP filter: ramp-filtered projections times ``pi / (2 n_angles)``.

        Then ``backprojection(filter_sinogram(sino))`` is the FBP reconstruction (in image units for
        every ``det_spacing``). ``filter_name``: :data:`FILTER_NAMES`, ``"ram-lak"`` (= ramp) or ``None``.
        """
        name = check_filter_name(filter_name)
        sinogram = self._sino(sinogram)
        if name is None:
            filtered = sinogram
        else:
            size = padded_size(self.det_count)
            response = torch.from_numpy(fourier_filter(size, name)).to(sinogram.device, sinogram.dtype)
            filtered = torch.fft.irfft(torch.fft.rfft(sinogram, n=size, dim=-1) * response, n=size,
                                       dim=-1)[..., : self.det_count]
        return filtered * (math.pi / (2 * self.n_angles))

    def ramp_filter(self, sinogram: torch.Tensor, filter_name: str | None = "ramp", power: float = 1.0) -> torch.Tensor:
        """iradon's filtering step in per-pixel units (no angular factor): the FBP-filtered data term.

        ``power`` raises the filter's frequency response to that power (1: the FBP filter itself;
        0.5: the square root, whose squared error is the ramp-weighted norm ``(Af − y)ᵀ R (Af − y)``).
        """
        check_filter_name(filter_name)
        sinogram = self._sino(sinogram)
        return self._filter(sinogram, check_filter_name(filter_name), edge_bins=False, circle=True, power=power)

    def _filter(self, sinogram: torch.Tensor, filter_name: str | None, edge_bins: bool,
                circle: bool, power: float = 1.0) -> torch.Tensor:
        """Filtered sinogram; with ``edge_bins`` also the filter's output one bin past each edge."""
        if filter_name is None:
            filtered = F.pad(sinogram, (1, 1)) if edge_bins else sinogram
            return filtered / self.det_spacing
        # iradon pads a circle=True sinogram to the image diagonal before choosing its FFT length.
        base = int(math.ceil(math.sqrt(2.0) * self.det_count)) if circle else self.det_count
        size = padded_size(base)
        response = fourier_filter(size, filter_name)
        if power != 1.0:
            response = np.maximum(response, 0.0) ** power
        response = torch.from_numpy(response).to(sinogram.device, sinogram.dtype)
        full = torch.fft.irfft(torch.fft.rfft(sinogram, n=size, dim=-1) * response, n=size, dim=-1)
        if edge_bins:
            filtered = torch.cat((full[..., -1:], full[..., : self.det_count + 1]), dim=-1)
        else:
            filtered = full[..., : self.det_count]
        return filtered / self.det_spacing

    def _backproject(self, padded: torch.Tensor, zero_outside: bool = False) -> torch.Tensor:
        """iradon's pixel-driven back-projection: each projection interpolated at the pixel's coordinate.

        ``zero_outside``: coordinates past the first/last bin read zero (iradon with circle=False, whose
        sinogram is not padded before filtering); otherwise they interpolate into the edge bins.
        """
        n, n_angles, n_det = self.resolution, self.n_angles, self.det_count
        lead = padded.shape[:-2]
        padded = padded.reshape(-1, n_angles, n_det + 2)
        batch = padded.shape[0]
        if batch == 0:
            return padded.new_zeros((*lead, n, n))
        matrix = self._backprojection_matrix(padded, zero_outside)
        if matrix is not None:  # the same interpolation as the loop below, cached as a sparse matrix
            return sparse_apply(matrix, padded.reshape(batch, -1)).reshape(*lead, n, n)
        centre = float(n // 2)
        coords = torch.arange(n, device=padded.device, dtype=padded.dtype) - centre
        x = coords.view(1, 1, n)
        y = coords.view(1, n, 1)
        out = padded.new_zeros((batch, n * n))
        chunk = max(1, (1 << 25) // (batch * n * n))
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
            if zero_outside:
                value = value * ((index >= 1.0) & (index <= float(n_det))).to(value.dtype)
            out = out + value.sum(dim=1)
        return out.reshape(*lead, n, n)

    def _backprojection_matrix(self, padded: torch.Tensor, zero_outside: bool) -> torch.Tensor | None:
        if self.projector.line_integral != "joseph":
            return None
        n, n_det = self.resolution, self.det_count
        coords = torch.arange(n, device=padded.device, dtype=torch.float64) - float(n // 2)
        cos = self._cos.to(padded.device, torch.float64).view(1, -1)
        sin = self._sin.to(padded.device, torch.float64).view(1, -1)

        def taps(start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            pixel = torch.arange(start, stop, device=padded.device)
            x, y = coords[pixel % n].view(-1, 1), coords[pixel // n].view(-1, 1)
            index = ((x * cos - y * sin) / self.det_spacing + float(n_det // 2) + 1.0).clamp(0.0, float(n_det + 1))
            lower = index.floor().clamp(max=float(n_det))
            weight = index - lower
            keep = ((index >= 1.0) & (index <= float(n_det))).to(index.dtype) if zero_outside else 1.0
            return lower, (1.0 - weight) * keep, weight * keep

        return interpolation_matrix(self, ("iradon", zero_outside), n * n, self.n_angles, n_det + 2, taps,
                                    padded.dtype, padded.device)

    def fbp(self, sinogram: torch.Tensor, filter_name: str | None = "ramp", circle: bool = True) -> torch.Tensor:
        """Filtered back-projection, equal to ``skimage.transform.iradon`` (same ``circle``) to rounding.

        Args:
            sinogram: ``(..., n_angles, det_count)``.
            filter_name: :data:`FILTER_NAMES`, ``"ram-lak"`` or ``None``.
            circle: zero the pixels outside the inscribed circle (radius ``resolution // 2``); the FFT
                length follows iradon's for that setting.
        """
        name = check_filter_name(filter_name)
        sinogram = self._sino(sinogram)
        filtered = self._filter(sinogram, name, edge_bins=True, circle=circle)
        image = self._backproject(filtered, zero_outside=not circle) * (math.pi / (2 * self.n_angles))
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
