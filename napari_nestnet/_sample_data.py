"""Sample data generated at load time (no downloads): one data set per task panel.

Every sample comes with its ground truth as a hidden layer marked ``metadata["role"] ==
"ground_truth"`` (and named "… (ground truth)"): the panels never take it as their input, and fill
their "reference" field with it, so PSNR/SSIM and the classical baselines' metrics appear out of the
box.  The measurements carry the metadata the panels read (CT angles, multi-frame shifts and
rotations, the up-sampling factor), and low-resolution layers are scaled and shifted so they cover
their ground truth in world coordinates.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ct_sinogram", "noisy_photo", "low_resolution", "multi_frame", "occupancy_volume"]

LayerData = tuple[Any, dict, str]

#: ``metadata["role"]`` of the ground-truth layers (see :mod:`napari_nestnet._pickers`).
GROUND_TRUTH = "ground_truth"


def _truth(description: str, **metadata: Any) -> dict:
    return {"role": GROUND_TRUTH, "description": description, **metadata}

# Sizes small enough that each panel's default run (its CPU steps, see the panels) takes about a
# minute on a 2-core CPU.
CT_SIZE = 128
CT_ANGLES = 60
PHOTO_SIZE = 128
SR_FACTOR = 4
OCCUPANCY_SIZE = 48


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    shape = (size, size) + image.shape[2:]
    return resize(image, shape, anti_aliasing=True, preserve_range=True).astype(np.float32)


def _phantom(size: int) -> np.ndarray:
    """Shepp–Logan phantom, zero outside the inscribed circle (what ``radon(circle=True)`` assumes)."""
    from skimage.data import shepp_logan_phantom

    image = np.clip(_resize(shepp_logan_phantom(), size), 0.0, 1.0)
    offset = np.arange(size) - size // 2
    image[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0
    return image


def ct_sinogram(size: int = CT_SIZE, n_angles: int = CT_ANGLES) -> list[LayerData]:
    """A sparse-view (60 angles over 180°) parallel-beam sinogram of a 128² Shepp–Logan phantom.

    The sinogram is in scikit-image's layout (detectors × angles); its angles (degrees) and layout are
    in ``layer.metadata``, which the CT panel reads.  The phantom is added, hidden, as the reference.

    Args:
        size: the phantom's side (``viewer.open_sample(..., size=32)`` for a quick look).
        n_angles: the number of views over 180°.
    """
    from skimage.transform import radon

    phantom = _phantom(size)
    angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
    sinogram = radon(phantom, theta=angles, circle=True).astype(np.float32)
    meta = {"angles_deg": angles.tolist(), "layout": "skimage", "geometry": "parallel-beam",
            "description": f"Shepp-Logan phantom {size}x{size}, {n_angles} views over 180 degrees"}
    return [
        (phantom, {"name": "shepp_logan_phantom (ground truth)", "visible": False, "colormap": "gray",
                   "metadata": _truth("ground truth of the CT sinogram sample")}, "image"),
        (sinogram, {"name": "ct_sinogram", "metadata": meta, "colormap": "gray"}, "image"),
    ]


def noisy_photo(size: int = PHOTO_SIZE) -> list[LayerData]:
    """A 128² colour photograph (scikit-image's astronaut) with Poisson–Gaussian photon noise.

    Args:
        size: the side of the photograph.
    """
    from skimage.data import astronaut

    from reconstruct.noise import photon_noise

    clean = np.clip(_resize(astronaut() / 255.0, size), 0.0, 1.0)
    noisy = np.asarray(photon_noise(clean, tau=30.0, readout=2.0, seed=0), dtype=np.float32)
    return [
        (clean, {"name": "astronaut (ground truth)", "rgb": True, "visible": False,
                 "metadata": _truth("the clean photograph")}, "image"),
        (noisy, {"name": "astronaut_noisy", "rgb": True,
                 "metadata": {"noise": {"kind": "photon", "tau": 30.0, "readout": 2.0, "seed": 0}}}, "image"),
    ]


def _camera(size: int) -> np.ndarray:
    from skimage.data import camera

    return np.clip(_resize(camera() / 255.0, size), 0.0, 1.0)


def low_resolution(size: int = PHOTO_SIZE, factor: int = SR_FACTOR) -> list[LayerData]:
    """A 32² image made by 4× average pooling of a 128² photograph (the camera man).

    The low-resolution layer is scaled and shifted so its pixels cover the high-resolution ground
    truth's pixels in world coordinates.

    Args:
        size: the side of the high-resolution photograph (a multiple of ``factor``).
        factor: the down-sampling factor.
    """
    hr = _camera(size)
    s = factor
    lr = hr.reshape(size // s, s, size // s, s).mean(axis=(1, 3)).astype(np.float32)
    offset = (s - 1) / 2.0
    return [
        (hr, {"name": "camera (ground truth)", "visible": False, "colormap": "gray",
              "metadata": _truth("the high-resolution photograph")}, "image"),
        (lr, {"name": "camera_lowres", "colormap": "gray", "scale": (s, s), "translate": (offset, offset),
              "metadata": {"scale": s, "description": f"{s}x average-pooled"}}, "image"),
    ]


def multi_frame(frames: int = 6, seed: int = 0, size: int = PHOTO_SIZE, factor: int = SR_FACTOR) -> list[LayerData]:
    """Six 32² frames of a 128² photograph, each shifted and rotated, then 4× average-pooled.

    ``layer.metadata`` holds ``shifts`` ((K, 2) as (dy, dx) in high-resolution pixels), ``rotations``
    ((K,) radians) and ``scale``, as the multi-frame panel expects.  Like the single low-resolution
    image, the frames are scaled and shifted (on their pixel axes) to cover the ground truth, so the
    result, on the grid ``scale`` times finer (:func:`reconstruct.grid.upsampled_grid`), lands on it.

    Args:
        frames: number of frames K.
        seed: seed of the random motions (the first frame is the unmoved reference).
        size: the side of the high-resolution photograph (a multiple of ``factor``).
        factor: the down-sampling factor.
    """
    from reconstruct.tasks import simulate_misr_frames

    hr = _camera(size)
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-2.0, 2.0, size=(frames, 2))
    rotations = np.deg2rad(rng.uniform(-3.0, 3.0, size=frames))
    shifts[0], rotations[0] = 0.0, 0.0
    stack = np.asarray(simulate_misr_frames(hr, shifts, rotations, scale=factor), dtype=np.float32)
    meta = {"shifts": shifts.tolist(), "rotations": rotations.tolist(), "scale": factor,
            "description": f"frame k = {factor}x average-pool(rotate(shift(image)))"}
    offset = (factor - 1) / 2.0
    return [
        (hr, {"name": "camera (ground truth)", "visible": False, "colormap": "gray",
              "metadata": _truth("the high-resolution photograph")}, "image"),
        (stack, {"name": "camera_frames", "metadata": meta, "colormap": "gray",
                 "scale": (1.0, factor, factor), "translate": (0.0, offset, offset)}, "image"),
    ]


def occupancy_volume(size: int = OCCUPANCY_SIZE) -> list[LayerData]:
    """A 48³ binary torus (major radius 0.55, minor radius 0.22 in [-1, 1]³) as a Labels layer.

    Args:
        size: the volume's side.
    """
    n = size
    axis = (np.arange(n) + 0.5) / n * 2.0 - 1.0
    z, y, x = np.meshgrid(axis, axis, axis, indexing="ij")
    torus = (np.sqrt(x**2 + y**2) - 0.55) ** 2 + z**2 <= 0.22**2
    return [(torus.astype(np.uint8), {"name": "torus_occupancy", "metadata": {"description": "binary torus"}},
             "labels")]
