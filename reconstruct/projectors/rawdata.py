"""Raw CT data: detector counts <-> line integrals, photon noise, and field-of-view checks.

Beer–Lambert: ``counts = dark + (flat - dark) * exp(-p)`` for line integrals ``p`` (attenuation ×
length). :func:`simulate_counts` draws Poisson counts at ``I0`` photons per unattenuated bin plus
Gaussian readout noise; :func:`line_integrals` inverts a measurement with flat- and dark-field
correction and ``-log``, clipping non-positive corrected counts (one warning line). Every function is
elementwise, so it serves every geometry's projections.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

__all__ = ["simulate_counts", "line_integrals", "noisy_projections", "check_field_of_view"]


def simulate_counts(projections: torch.Tensor, i0: float, readout_std: float = 0.0, dark: float = 0.0,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """Detector counts for line integrals ``projections``: Poisson(I0 e^-p) + dark + N(0, readout_std²)."""
    if not (isinstance(i0, (int, float)) and math.isfinite(i0) and i0 > 0):
        raise ValueError(f"i0 (photons per unattenuated detector bin) must be a positive number; got {i0!r}")
    if readout_std < 0:
        raise ValueError(f"readout_std must be >= 0; got {readout_std!r}")
    expected = float(i0) * torch.exp(-projections.detach().to(torch.float64))
    counts = torch.poisson(expected, generator=generator)
    if readout_std > 0:
        counts = counts + readout_std * torch.randn(counts.shape, generator=generator, dtype=counts.dtype,
                                                    device=counts.device)
    return (counts + dark).to(projections.dtype if projections.is_floating_point() else torch.float64)


def line_integrals(counts: torch.Tensor, flat: Any, dark: Any = 0.0, floor: float = 0.5) -> torch.Tensor:
    """``-log((counts - dark) / (flat - dark))``; corrected counts below ``floor`` photons are clipped.

    Args:
        counts: measured counts (any geometry's projection shape).
        flat: flat-field (open-beam) counts: a number or a tensor broadcastable to ``counts``.
        dark: dark-field counts, same forms.
        floor: the smallest corrected count kept (non-positive values would make ``-log`` infinite).
    """
    counts = torch.as_tensor(counts)
    values = counts.to(torch.float64) if not counts.is_floating_point() else counts
    flat_t = torch.as_tensor(flat, dtype=values.dtype, device=values.device)
    dark_t = torch.as_tensor(dark, dtype=values.dtype, device=values.device)
    open_beam = flat_t - dark_t
    if bool((open_beam <= 0).any()):
        raise ValueError("flat - dark must be positive everywhere (the open-beam counts); check the flat and dark "
                         "fields")
    corrected = values - dark_t
    low = corrected < floor
    n_low = int(low.sum())
    if n_low:
        warnings.warn(f"{n_low} of {corrected.numel()} dark-corrected counts were below {floor:g} and were clipped "
                      f"to {floor:g} before -log (photon starvation)", RuntimeWarning, stacklevel=2)
        corrected = torch.clamp(corrected, min=floor)
    return -torch.log(corrected / open_beam)


def noisy_projections(projections: torch.Tensor, i0: float, readout_std: float = 0.0,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Line integrals as a scanner with ``I0`` photons per bin and readout noise would measure them."""
    counts = simulate_counts(projections, i0, readout_std, generator=generator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return line_integrals(counts, flat=float(i0)).to(projections.dtype)


def check_field_of_view(geom: Any, volume: torch.Tensor, threshold: float = 0.0) -> None:
    """Raise a one-line ValueError when the object in ``volume`` reaches outside the detector's view.

    The object's support is the set of voxels whose magnitude exceeds ``threshold``; every view must
    see its whole transaxial extent (truncated projections make FBP and the solvers biased).
    """
    fov = getattr(geom, "field_of_view_radius", None)
    if fov is None:
        return
    support = volume.detach().abs().reshape(-1, *geom.volume_shape).amax(0) > threshold
    if not bool(support.any()):
        return
    coords = geom.world_coordinates(torch.float64)
    radius = torch.sqrt(coords[0] ** 2 + coords[1] ** 2)[support.cpu()].max().item()
    limit = fov()
    if radius > limit:
        raise ValueError(f"the detector does not cover the object: it reaches {radius:.1f} mm from the rotation axis "
                         f"but the detector sees {limit:.1f} mm; add detector bins, increase det_spacing or move "
                         f"the detector closer to the source")
