"""Small CT test items on disk: rotated Shepp-Logan phantoms, their sinograms and a manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...tasks.spec import Param
from ..files import PathLike, atomic_write_text
from ..images import write_image
from ..meta import ImageMeta

__all__ = ["write_phantom_sinograms"]


def write_phantom_sinograms(
    folder: PathLike,
    count: int = 4,
    size: int = 64,
    n_angles: int = 60,
    *,
    pixel_size: float = 1.0,
    suffix: str = ".nii.gz",
    seed: int = 0,
) -> Path:
    """Write ``count`` small CT test items (rotated Shepp-Logan phantoms) and a manifest; returns the manifest.

    For demos, tests and benchmarks (the MONAI bundle in ``configs/`` uses it). Each item ``i`` is a
    sinogram ``sino_<i>`` (scikit-image layout, detectors × angles, made by ``skimage.transform.radon``
    over ``0:180:n_angles``; SimpleITK spacing ``(1, pixel_size)``: detector bins ``pixel_size`` wide) and
    its phantom ``phantom_<i>`` (values in [0, 1], spacing ``pixel_size``). ``manifest.csv`` lists them
    with ``path``, ``angles`` and ``reference`` columns.

    Args:
        folder: where to write (created).
        count: number of items.
        size: phantom side in pixels.
        n_angles: projections per sinogram.
        pixel_size: physical pixel size stored in the files.
        suffix: file type of the images (``.nii.gz``, ``.mha``, ``.nrrd``, ``.tif``, ``.npz``).
        seed: seeds the rotation and contrast of each phantom.
    """
    from skimage.data import shepp_logan_phantom
    from skimage.transform import radon, resize, rotate

    count, size, n_angles = (Param(name, int, None, name, low=1).check(value)
                             for name, value in (("count", count), ("size", size), ("n_angles", n_angles)))
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    base = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    yy, xx = np.mgrid[:size, :size] - (size // 2)
    inside = (xx**2 + yy**2) <= (size // 2 - 1) ** 2  # radon(circle=True) sees only the inscribed disc
    theta = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    angles_spec = f"0:180:{n_angles}"
    rows = ["path,angles,reference"]
    for i in range(count):
        phantom = rotate(base, float(rng.uniform(-30, 30)), preserve_range=True) * float(rng.uniform(0.7, 1.0))
        phantom = np.clip(phantom * inside, 0.0, 1.0).astype(np.float32)
        sino = radon(phantom, theta=theta, circle=True).astype(np.float32)
        sino_name, ref_name = f"sino_{i:03d}{suffix}", f"phantom_{i:03d}{suffix}"
        write_image(folder / sino_name, sino, ImageMeta((1.0, pixel_size), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)),
                    overwrite=True)
        write_image(folder / ref_name, phantom,
                    ImageMeta((pixel_size, pixel_size), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0)), overwrite=True)
        rows.append(f"{sino_name},{angles_spec},{ref_name}")
    return atomic_write_text(folder / "manifest.csv", "\n".join(rows) + "\n")
