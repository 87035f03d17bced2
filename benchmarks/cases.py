"""The benchmark cases: data loading, synthetic signals and the per-task case builders.

A case is one measurement with its ground truth; cases of a task that belong in the same table
share a *group* (e.g. the 16 DIV2K crops are one group, kodak another; each PINN β is a group).
Every case of a protocol is built from the same data for every model and seed (noise and frame
motions are drawn from fixed data seeds, not from the model seed).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_DATA_DIR,
    PROTOCOLS,
    TASK_NAMES,
    DataMissingError,
    missing_data_folder_message,
)

__all__ = [
    "Case",
    "build_cases",
    "dev_case",
    "task_config",
    "task_steps",
    "case_hash",
    "load_image",
    "resize",
    "scale_to",
    "center_square",
    "synthetic_image",
    "synthetic_phantom",
    "synthetic_volume",
    "misr_motion",
]


@dataclass
class Case:
    """One measurement of a task with its ground truth.

    Attributes:
        name: unique within the task (e.g. ``"div2k-03"``).
        group: the table the case is reported in (e.g. ``"div2k"``, ``"beta=30"``).
        args: positional arguments of the task function (the measurement).
        kwargs: task keyword arguments that describe the measurement (scale, shifts, angles, ...).
        reference: the ground truth in the task's output layout, or ``None`` (PINN: exact solution
            is computed by the task).
        description: a line for the report.
        data: what the classical references need (low-resolution image, noisy image, ...).
    """

    name: str
    group: str
    args: tuple
    kwargs: dict[str, Any]
    reference: np.ndarray | None
    description: str
    data: dict[str, Any] = field(default_factory=dict)


def _data_file(data_dir: Path, name: str) -> Path:
    path = Path(data_dir) / name
    if not path.exists():
        raise DataMissingError(
            f"benchmark data file {path} not found; pass --data-dir pointing at the shared data folder "
            f"(default {DEFAULT_DATA_DIR}) or use --protocol tiny (synthetic data)"
        )
    return path


def load_image(data_dir: Path, name: str) -> np.ndarray:
    """Read an image of the data folder as float32 in [0, 1] (grey (H, W) or RGB (H, W, 3)).

    8/16-bit images are divided by their type's maximum; the 16-bit chest CT slice is min-max
    normalised as in the WIRE harness.
    """
    from skimage import io as skio

    path = _data_file(data_dir, name)
    raw = skio.imread(str(path))
    if raw.ndim == 3 and raw.shape[-1] == 4:
        raw = raw[..., :3]
    img = raw.astype(np.float64)
    if name.startswith("chest"):
        if img.ndim == 3:
            img = img[..., 1]
        img = (img - img.min()) / max(img.max() - img.min(), 1e-12)
    elif np.issubdtype(raw.dtype, np.integer):
        img = img / np.iinfo(raw.dtype).max
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def resize(image: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Anti-aliased resize of the spatial axes to ``shape`` (channels kept)."""
    from skimage.transform import resize as sk_resize

    shape = tuple(int(s) for s in shape)
    if tuple(image.shape[:2]) == shape:
        return image.astype(np.float32)
    out_shape = shape + tuple(image.shape[2:])
    out = sk_resize(image, out_shape, order=1, anti_aliasing=True, preserve_range=True)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def scale_to(image: np.ndarray, factor: float, multiple: int = 1) -> np.ndarray:
    """Resize by ``factor`` and crop so both sides are multiples of ``multiple``."""
    h, w = image.shape[:2]
    nh, nw = max(1, round(h * factor)), max(1, round(w * factor))
    out = resize(image, (nh, nw)) if factor != 1.0 else image
    nh, nw = (nh // multiple) * multiple, (nw // multiple) * multiple
    return out[:nh, :nw].astype(np.float32)


def center_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return image[top : top + s, left : left + s]


def synthetic_image(shape: Sequence[int], channels: int = 1, seed: int = 0) -> np.ndarray:
    """A smooth-plus-edges test image in [0, 1]: sinusoids, a disk and a bar (no data files needed)."""
    h, w = shape
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    rng = np.random.default_rng(seed)
    planes = []
    for c in range(channels):
        fy, fx = rng.uniform(1, 3, 2)
        base = 0.5 + 0.25 * np.sin(np.pi * (fy * y + c * 0.3)) * np.cos(np.pi * fx * x)
        base = base + 0.3 * ((x - 0.2) ** 2 + (y + 0.1) ** 2 < 0.2) - 0.2 * (np.abs(x + 0.5) < 0.1)
        planes.append(np.clip(base, 0, 1))
    img = np.stack(planes, -1) if channels > 1 else planes[0]
    return img.astype(np.float32)


def synthetic_phantom(size: int) -> np.ndarray:
    """An ellipse phantom inside the inscribed circle, in [0, 1]."""
    y, x = np.meshgrid(np.linspace(-1, 1, size), np.linspace(-1, 1, size), indexing="ij")
    img = 0.8 * ((x / 0.7) ** 2 + (y / 0.85) ** 2 <= 1)
    img -= 0.3 * (((x - 0.2) / 0.2) ** 2 + (y / 0.4) ** 2 <= 1)
    img += 0.4 * (((x + 0.25) / 0.15) ** 2 + ((y + 0.3) / 0.15) ** 2 <= 1)
    return np.clip(img, 0, 1).astype(np.float32)


def synthetic_volume(size: int) -> np.ndarray:
    """A torus-plus-sphere occupancy grid (bool)."""
    z, y, x = np.meshgrid(*(np.linspace(-1, 1, size),) * 3, indexing="ij")
    torus = (np.sqrt(x**2 + y**2) - 0.5) ** 2 + z**2 <= 0.2**2
    sphere = (x - 0.1) ** 2 + (y + 0.1) ** 2 + (z - 0.4) ** 2 <= 0.3**2
    return torus | sphere


def _image_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    if protocol == "tiny":
        img = synthetic_image((16, 16), channels=1)
        return [Case("synthetic-16", "synthetic", (img,), {}, img, "synthetic 16x16 grey")]
    cases = []
    if cfg.get("div2k"):
        folder = _data_file(data_dir, "div2k")
        names = cfg.get("div2k_names")
        paths = [folder / n for n in names] if names else sorted(folder.glob("*.png"))
        for path in paths:
            img = load_image(folder, path.name)
            how = ""
            if cfg.get("div2k_size"):  # anti-aliased down-sampling of the 512² crop
                size = f"{img.shape[0]}x{img.shape[1]}"
                img = resize(img, cfg["div2k_size"])
                how = f" resized from {size}"
            suffix = f"-{img.shape[0]}" if how else ""
            cases.append(
                Case(
                    f"div2k-{path.stem}{suffix}",
                    "div2k",
                    (img,),
                    {},
                    img,
                    f"DIV2K crop {path.name}{how}, {img.shape[0]}x{img.shape[1]} RGB",
                )
            )
    if cfg.get("kodak"):
        img = load_image(data_dir, "kodak.png")
        cases.append(Case("kodak", "kodak", (img,), {}, img, f"kodak.png, {img.shape[0]}x{img.shape[1]} RGB"))
    if "size" in cfg:
        img = resize(load_image(data_dir, "cameraman.tif"), cfg["size"])
        cases.append(
            Case(
                f"cameraman-{img.shape[0]}",
                "cameraman",
                (img,),
                {},
                img,
                f"cameraman.tif resized to {img.shape[0]}x{img.shape[1]} grey",
            )
        )
    return cases


def dev_case(protocol: str, data_dir: Path) -> Case:
    """The development image of the learning-rate sweep (never one of the test images)."""
    if protocol == "tiny":
        img = synthetic_image((16, 16), channels=1, seed=1)
        return Case("synthetic-dev", "dev", (img,), {}, img, "synthetic 16x16 grey (seed 1)")
    cfg = PROTOCOLS[protocol]["dev"]
    img = resize(center_square(load_image(data_dir, "kodak.png")), cfg["size"])
    return Case(
        "kodak-dev",
        "dev",
        (img,),
        {},
        img,
        f"centre square of kodak.png resized to {img.shape[0]}x{img.shape[1]} RGB",
    )


def _parrot(cfg: dict, data_dir: Path, multiple: int) -> np.ndarray:
    img = load_image(data_dir, "parrot.png")
    if "size" in cfg:
        h, w = cfg["size"]
        return resize(img, (h, w))[: (h // multiple) * multiple, : (w // multiple) * multiple]
    return scale_to(img, cfg["scale_factor"], multiple)


def _denoise_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    from reconstruct.noise import photon_noise

    clean = synthetic_image((16, 16), channels=3) if protocol == "tiny" else _parrot(cfg, data_dir, 1)
    noisy = photon_noise(clean, tau=cfg["tau"], readout=cfg["readout"], seed=1234).astype(np.float32)
    name = "synthetic" if protocol == "tiny" else "parrot"
    return [
        Case(
            f"{name}-{clean.shape[0]}x{clean.shape[1]}",
            name,
            (noisy,),
            # every model at one fixed step budget (WIRE's protocol): the library's default held-out
            # stop would give each model its own budget (it is measured in the README instead)
            {"stop": "none"},
            clean,
            f"{name} {clean.shape[0]}x{clean.shape[1]} RGB, photon noise tau={cfg['tau']:g}, "
            f"readout {cfg['readout']:g} (noise seed 1234)",
            {"noisy": noisy},
        )
    ]


def _area_downsample(image: np.ndarray, factor: int) -> np.ndarray:
    from skimage.transform import downscale_local_mean

    factors = (factor, factor) + (1,) * (image.ndim - 2)
    return downscale_local_mean(image, factors).astype(np.float32)


def _sisr_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    scale = cfg["scale"]
    hr = synthetic_image((32, 32), channels=3) if protocol == "tiny" else _parrot(cfg, data_dir, scale)
    lr = _area_downsample(hr, scale)
    name = "synthetic" if protocol == "tiny" else "parrot"
    return [
        Case(
            f"{name}-{hr.shape[0]}x{hr.shape[1]}",
            name,
            (lr,),
            {"scale": scale},
            hr,
            f"{name} {hr.shape[0]}x{hr.shape[1]} RGB, area-downsampled x{scale} to "
            f"{lr.shape[0]}x{lr.shape[1]}",
            {"lowres": lr},
        )
    ]


def misr_motion(
    frames: int, shift_max: float, rotation_max: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Frame motions: frame 0 is the reference (no motion), the others uniform in ±max."""
    rng = np.random.default_rng(seed)
    shifts = rng.uniform(-shift_max, shift_max, (frames, 2))
    rotations = rng.uniform(-rotation_max, rotation_max, frames)
    shifts[0], rotations[0] = 0.0, 0.0
    return shifts.astype(np.float32), rotations.astype(np.float32)


def _misr_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    import torch

    from reconstruct.operators import WarpDownsample

    scale = cfg["scale"]
    if protocol == "tiny":
        hr = synthetic_image((32, 32), channels=3)
    elif "size" in cfg:
        h, w = cfg["size"]
        hr = resize(load_image(data_dir, "kodak.png"), (h, w))
    else:
        hr = scale_to(load_image(data_dir, "kodak.png"), cfg["scale_factor"], scale)
    shifts, rotations = misr_motion(cfg["frames"], cfg["shift_max"], cfg["rotation_max"], seed=7)
    op = WarpDownsample(hr.shape[:2], hr.shape[2], scale, shifts, rotations)
    with torch.no_grad():
        frames = op(torch.from_numpy(hr)).numpy().astype(np.float32)  # (K, h, w, C)
    name = "synthetic" if protocol == "tiny" else "kodak"
    desc = (
        f"{name} {hr.shape[0]}x{hr.shape[1]} RGB, {len(frames)} frames x{scale}, shifts up to "
        f"±{cfg['shift_max']:.1f} px, rotations up to ±{math.degrees(cfg['rotation_max']):.0f}° "
        "(motion seed 7)"
    )
    return [
        Case(
            f"{name}-{hr.shape[0]}x{hr.shape[1]}",
            name,
            (frames,),
            {"shifts": shifts, "rotations": rotations, "scale": scale},
            hr,
            desc,
            {
                "frames": frames,
                "shifts": shifts,
                "rotations": rotations,
                "scale": scale,
                "mask": op.mask.numpy(),
            },
        )
    ]


def _ct_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    from benchmarks.cases_ct import ct_cases  # the CT builders live apart (this module's size)

    return ct_cases(cfg, protocol, data_dir)


def _ct3d_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    from benchmarks.cases_ct import ct3d_cases

    return ct3d_cases(cfg, protocol, data_dir)


def _occupancy_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    size = cfg["size"]
    if protocol == "tiny":
        vol = synthetic_volume(size)
        return [
            Case(
                f"torus-{size}",
                "torus",
                (vol,),
                {},
                vol.astype(np.float32),
                f"synthetic torus + sphere {size}³",
            )
        ]
    from reconstruct.app.meshes import read_mesh
    from reconstruct.tasks import voxelize

    cases = []
    for mesh in cfg["meshes"]:
        vol = np.asarray(voxelize(read_mesh(_data_file(data_dir, Path("meshes") / mesh)), size)).astype(bool)
        stem = Path(mesh).stem
        cases.append(
            Case(
                f"{stem}-{size}",
                stem,
                (vol,),
                {},
                vol.astype(np.float32),
                f"meshes/{mesh} voxelised at {size}³ (occupancy {vol.mean():.3f})",
            )
        )
    return cases


def _pinn_cases(cfg: dict, protocol: str, data_dir: Path) -> list[Case]:
    kwargs = {k: cfg[k] for k in ("nx", "nt") if k in cfg}
    return [
        Case(
            f"beta={beta:g}",
            f"beta={beta:g}",
            (float(beta),),
            dict(kwargs),
            None,
            f"β = {beta:g}" + (f", {kwargs['nx']}x{kwargs['nt']} grid" if kwargs else ""),
        )
        for beta in cfg["betas"]
    ]


_BUILDERS: dict[str, Callable[[dict, str, Path], list[Case]]] = {
    "image": _image_cases,
    "denoise": _denoise_cases,
    "sisr": _sisr_cases,
    "misr": _misr_cases,
    "ct": _ct_cases,
    "ct3d": _ct3d_cases,
    "occupancy": _occupancy_cases,
    "pinn": _pinn_cases,
}


def task_config(protocol: str, task: str) -> dict[str, Any]:
    """The protocol's settings of ``task`` (steps, sizes, ...)."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    if task not in TASK_NAMES:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASK_NAMES)}")
    return PROTOCOLS[protocol][task]


def build_cases(
    protocol: str, task: str, data_dir: Path | str = DEFAULT_DATA_DIR, max_cases: int | None = None
) -> list[Case]:
    """The cases of ``task`` under ``protocol`` (the first ``max_cases`` only, when given)."""
    cfg = task_config(protocol, task)
    data_dir = Path(data_dir)
    if protocol != "tiny" and not data_dir.is_dir():
        raise DataMissingError(missing_data_folder_message(data_dir))
    if task == "image" and protocol == "paper" and max_cases:
        # Build only what is asked for: reading 16 DIV2K crops is the slow part of a short launch.
        cases = _image_cases({**cfg, "kodak": False}, protocol, data_dir)[:max_cases]
        if len(cases) < max_cases and cfg.get("kodak"):
            cases += _image_cases({"kodak": True}, protocol, data_dir)
        return cases[:max_cases]
    if task == "occupancy" and max_cases:
        cfg = {**cfg, "meshes": tuple(cfg.get("meshes", ()))[:max_cases]}
    cases = _BUILDERS[task](cfg, protocol, data_dir)
    return cases[:max_cases] if max_cases else cases


def task_steps(protocol: str, task: str, case: Case | None = None) -> int | None:
    """Step budget of ``task``; occupancy budgets in epochs convert to steps for the case's volume."""
    cfg = task_config(protocol, task)
    if "epochs" in cfg and case is not None:
        points = int(np.prod(case.args[0].shape))
        return int(math.ceil(cfg["epochs"] * points / cfg["batch_size"]))
    return cfg.get("steps")


def case_hash(case: Case) -> str:
    """Fingerprint of a case's data (measurement, motion/angle arguments, ground truth).

    Stored in records and references so that a resumed run recomputes whatever was measured on
    different data (a changed protocol size, a fixed forward operator, ...).
    """
    import hashlib

    digest = hashlib.sha1()

    def feed(value: Any) -> None:
        if isinstance(value, np.ndarray):
            digest.update(f"{value.shape}{value.dtype}".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, (list, tuple)):
            for v in value:
                feed(v)
        elif isinstance(value, dict):
            for k in sorted(value):
                digest.update(str(k).encode())
                feed(value[k])
        else:
            digest.update(repr(value).encode())

    feed(case.args)
    feed(case.kwargs)
    feed(case.reference)
    return digest.hexdigest()[:16]
