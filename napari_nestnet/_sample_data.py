"""Sample data generated at load time (no downloads): one data set per task panel.

Every sample comes with its ground truth as a hidden layer marked ``metadata["role"] ==
"ground_truth"`` (and named "… (ground truth)"): the panels never take it as their input, and fill
their "reference" field with it, so PSNR/SSIM and the classical baselines' metrics appear out of the
box.  The measurements carry the metadata the panels read (CT angles, multi-frame shifts and
rotations, the up-sampling factor), and low-resolution layers are scaled and shifted so they cover
their ground truth in world coordinates.

The fan-beam and cone-beam samples are made with the project's own projectors
(:mod:`reconstruct.projectors`): exact line integrals of an analytic Shepp–Logan phantom along the
geometry's rays (:func:`~reconstruct.projectors.phantoms.analytic_projections`, so no "inverse
crime"), 1 % Gaussian noise, and the phantom rasterised on the grid the task reconstructs on by
default.  Their metadata holds every geometry parameter under the task's own parameter names
(``geometry``, ``source_distance``, ``source_detector_distance``, ``det_spacing``, ``det_offset``,
``detector_shape``, ``voxel_size``, ``slice_spacing``; see :data:`reconstruct.tasks.CT_RECONSTRUCT`
and :data:`reconstruct.tasks.CT_RECONSTRUCT_3D`) beside ``angles_deg`` and ``layout``, so
``ct_reconstruct(data, md["angles_deg"], **{p: md[p] for p in task params if p in md})`` reconstructs
them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["ct_sinogram", "fan_sinogram", "cone_beam_scan", "noisy_photo", "low_resolution", "multi_frame",
           "occupancy_volume"]

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
FAN_SIZE = 128
FAN_ANGLES = 120  # over 360°
CONE_SIZE = 48
CONE_ANGLES = 60  # over 360°
NOISE_LEVEL = 0.01  # Gaussian noise, standard deviation as a fraction of the largest line integral

# Fan beam: source 400 mm from the isocentre, flat detector at 800 mm, 2 mm pitch: 1 mm at the
# isocentre, so the task's default grid (det_count pixels of det_spacing * d / dsd) is the phantom's.
FAN_GEOMETRY = {"source_distance": 400.0, "source_detector_distance": 800.0, "det_spacing": 2.0}
# Cone beam: the same magnification (2) at half the distances: a half cone angle of ~7° for 48 rows.
CONE_GEOMETRY = {"source_distance": 200.0, "source_detector_distance": 400.0, "det_spacing": 2.0}


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
    meta = {"angles_deg": angles.tolist(), "layout": "skimage", "geometry": "parallel",
            "description": f"Shepp-Logan phantom {size}x{size}, {n_angles} views over 180 degrees"}
    return [
        (phantom, {"name": "shepp_logan_phantom (ground truth)", "visible": False, "colormap": "gray",
                   "metadata": _truth("ground truth of the CT sinogram sample")}, "image"),
        (sinogram, {"name": "ct_sinogram", "metadata": meta, "colormap": "gray"}, "image"),
    ]


def _noisy(projections: np.ndarray, level: float, seed: int) -> tuple[np.ndarray, dict]:
    """``projections`` plus Gaussian noise of ``level`` × their largest value, and its description."""
    from reconstruct.noise import gaussian_noise

    sigma = float(level * np.abs(projections).max())
    noisy = np.asarray(gaussian_noise(projections, sigma, seed=seed), dtype=np.float32)
    return noisy, {"kind": "gaussian", "relative": float(level), "sigma": sigma, "seed": int(seed)}


def fan_sinogram(size: int = FAN_SIZE, n_angles: int = FAN_ANGLES, noise: float = NOISE_LEVEL,
                 seed: int = 0) -> list[LayerData]:
    """A fan-beam sinogram (flat detector, 120 views over 360°, 1 % noise) of a 128² Shepp–Logan phantom.

    Geometry (mm): source 400 from the rotation axis, flat detector 800 from the source, ``size``
    elements of 2 mm (1 mm at the isocentre: the phantom's pixel).  The detector sees a disc of
    radius of about 0.98 × ``size / 2`` mm; the phantom (modified Shepp–Logan, radius 0.9 × ``size / 2`` mm)
    lies inside it.  The sinogram is in scikit-image's layout (detectors × angles), like
    :func:`ct_sinogram`; angles turn counter-clockwise (:mod:`reconstruct.projectors.geometry`).
    ``layer.metadata`` holds ``angles_deg``, ``layout`` and the task's geometry parameters
    (``geometry="fan"``, distances, ``det_spacing``, ``det_offset``, ``detector_shape``), for
    information ``det_count`` and the pixel size ``voxel_size`` (mm), the noise, and a description.
    The phantom is added, hidden, as the reference (``size``², on the grid
    ``ct_reconstruct(..., geometry="fan")`` reconstructs on by default).

    Args:
        size: the phantom's side and the detector's element count.
        n_angles: the number of views over 360°.
        noise: standard deviation of the Gaussian noise as a fraction of the largest line integral.
        seed: seed of the noise.
    """
    import torch

    from reconstruct.projectors import FanBeam2D
    from reconstruct.projectors.phantoms import analytic_projections, rasterize, shepp_logan_2d

    d, dsd, pitch = (FAN_GEOMETRY[k] for k in ("source_distance", "source_detector_distance", "det_spacing"))
    pixel = pitch * d / dsd
    angles = np.linspace(0.0, 360.0, n_angles, endpoint=False)
    geom = FanBeam2D((size, size), np.deg2rad(angles), size, d, dsd, pitch, pixel, detector="flat")
    shapes = shepp_logan_2d(0.9 * size / 2.0 * pixel)
    with torch.no_grad():
        # (clipped: the ellipses' sums leave rounding residues of ~1e-17 around zero)
        phantom = np.clip(rasterize(shapes, geom, supersample=4).numpy(), 0.0, None).astype(np.float32)
        clean = analytic_projections(shapes, geom).numpy()  # (views, detectors)
    sinogram, noise_md = _noisy(clean, noise, seed)
    meta = {"angles_deg": angles.tolist(), "layout": "skimage", "geometry": "fan", **FAN_GEOMETRY,
            "det_offset": 0.0, "detector_shape": "flat", "det_count": size, "voxel_size": pixel,
            "noise": noise_md,
            "description": f"Shepp-Logan phantom {size}x{size} ({pixel:g} mm pixels), fan beam, flat detector, "
                           f"{n_angles} views over 360 degrees, {100 * noise:g} % Gaussian noise"}
    return [
        (phantom, {"name": "shepp_logan_fan (ground truth)", "visible": False, "colormap": "gray",
                   "metadata": _truth("ground truth of the fan-beam sinogram sample", voxel_size=pixel)}, "image"),
        (np.ascontiguousarray(sinogram.T), {"name": "ct_fan_sinogram", "metadata": meta, "colormap": "gray"},
         "image"),
    ]


def cone_beam_scan(size: int = CONE_SIZE, n_angles: int = CONE_ANGLES, noise: float = NOISE_LEVEL,
                   seed: int = 0) -> list[LayerData]:
    """A cone-beam scan (flat panel, 60 views over 360°, 1 % noise) of a 48³ 3-D Shepp–Logan phantom.

    Geometry (mm): circular orbit, source 200 from the rotation (z) axis, flat panel 400 from the
    source with ``size`` × ``size`` pixels of 2 mm (1 mm at the isocentre: the phantom's voxel).  The
    projections are ``(views, rows, cols)`` (row 0 is the lowest z, columns along the detector axis;
    :mod:`reconstruct.projectors.geometry`), as ``ct_reconstruct_3d(..., geometry="cone")`` takes them.
    ``layer.metadata`` holds ``angles_deg``, ``layout``, the task's geometry parameters
    (``geometry="cone"``, distances, ``det_spacing``, ``voxel_size``, ``slice_spacing``), ``det_shape``
    (rows, cols), the noise and a description.  The phantom (radius 0.85 × ``size / 2`` mm) is added,
    hidden, as the reference, on the grid the task reconstructs on by default (``size``³ voxels of
    1 mm, centred on the rotation axis: its ``scale`` and ``translate`` are the task's spacing and
    origin, so it overlays the reconstruction).

    Args:
        size: the phantom's side and the panel's rows and columns.
        n_angles: the number of views over 360°.
        noise: standard deviation of the Gaussian noise as a fraction of the largest line integral.
        seed: seed of the noise.
    """
    import torch

    from reconstruct.projectors import ConeBeam3D
    from reconstruct.projectors.phantoms import analytic_projections, rasterize, shepp_logan_3d

    d, dsd, pitch = (CONE_GEOMETRY[k] for k in ("source_distance", "source_detector_distance", "det_spacing"))
    voxel = pitch * d / dsd
    angles = np.linspace(0.0, 360.0, n_angles, endpoint=False)
    geom = ConeBeam3D((size, size, size), np.deg2rad(angles), (size, size), d, dsd, pitch, voxel)
    shapes = shepp_logan_3d(0.85 * size / 2.0 * voxel)
    with torch.no_grad():
        phantom = np.clip(rasterize(shapes, geom, supersample=2).numpy(), 0.0, None).astype(np.float32)
        clean = analytic_projections(shapes, geom).numpy()  # (views, rows, cols)
    projections, noise_md = _noisy(clean, noise, seed)
    meta = {"angles_deg": angles.tolist(), "layout": "views, rows, cols", "geometry": "cone", **CONE_GEOMETRY,
            "det_shape": [size, size], "detector_shape": "flat", "voxel_size": voxel, "slice_spacing": voxel,
            "noise": noise_md,
            "description": f"3-D Shepp-Logan phantom {size}^3 ({voxel:g} mm voxels), cone beam, flat panel "
                           f"{size}x{size}, {n_angles} views over 360 degrees, {100 * noise:g} % Gaussian noise"}
    spacing = (voxel,) * 3
    origin = tuple(-(size - 1) / 2.0 * s for s in spacing)  # the task's extras["origin"]
    return [
        (phantom, {"name": "shepp_logan_3d (ground truth)", "visible": False, "colormap": "gray",
                   "scale": spacing, "translate": origin,
                   "metadata": _truth("ground truth of the cone-beam sample", spacing=list(spacing),
                                      origin=list(origin))}, "image"),
        (projections, {"name": "ct_cone_projections", "metadata": meta, "colormap": "gray"}, "image"),
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
