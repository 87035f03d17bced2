"""The ``nestnet`` command: one sub-command per task, plus ``demo`` and ``batch``.

Every task sub-command reads its input with :func:`reconstruct.io.read_image` (PNG/TIFF, NumPy, NIfTI,
MetaImage, NRRD), runs the :mod:`reconstruct.tasks` recipe, writes the result in the input's format
with its spacing/origin/direction, and a JSON record beside it (metrics, best iterate, history, the
exact parameters, versions, seconds).  Outputs are written atomically, never over an existing file
without ``--overwrite`` and never onto or inside an input.  Bad input ends with one line
``nestnet: error: <message>`` on stderr and exit status 2.

Examples::

    nestnet demo                                     # CT of a phantom: NestNet vs FBP, PNG + JSON
    nestnet ct sinogram.npy --angles 0:180:60 --out recon.npy
    nestnet denoise noisy.png --model siren --steps 1000 --out clean.png
    nestnet sr lowres.nii.gz --scale 4 --out highres.nii.gz
    nestnet pinn --beta 5 --out u.npy

Also runs as ``python -m reconstruct.cli``.  This is an application module: the science modules of
:mod:`reconstruct` never import it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["main", "build_parser", "EXIT_OK", "EXIT_ERROR", "EXIT_USAGE", "EXIT_INTERRUPTED"]

EXIT_OK = 0
EXIT_ERROR = 1  # an unexpected failure (one line; NESTNET_DEBUG=1 shows the traceback)
EXIT_USAGE = 2  # bad input or arguments: nothing was written
EXIT_INTERRUPTED = 130

PROG = "nestnet"
_MESH_SUFFIXES = (".stl", ".obj", ".ply", ".off", ".glb", ".gltf")
_PICTURE_FORMATS = ("png", "jpeg", "bmp")

# Demo defaults: a 96² phantom, 60 noisy views; sized to run in 1–2 minutes on 2 CPU cores.
_DEMO_SIZE = 96
_DEMO_ANGLES = 60
_DEMO_NOISE = 0.01
_DEMO_STEPS = 150


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


class _Usage(ValueError):
    """A usage error found after parsing (reported like argparse's own)."""


def _one_line(text: str) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def _json_arg(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object like '{{\"hidden_channels\": [128, 128]}}': {text!r}")
    return value


def _positive_int_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _positive_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _nonneg_float_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _strip_image_suffix(path: Path) -> tuple[str, str]:
    """``(stem, suffix)`` with compound suffixes (``.nii.gz``) kept whole."""
    from .io import SUPPORTED_SUFFIXES

    name = path.name
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], name[-len(suffix):]
    return path.stem, path.suffix


def _default_output(input_path: Path, tag: str, suffix: str | None = None) -> Path:
    stem, in_suffix = _strip_image_suffix(input_path)
    suffix = suffix or in_suffix
    if suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        suffix = ".png"  # lossy or limited formats are read, not written
    return input_path.with_name(f"{stem}_{tag}{suffix}")


def _json_path(output: Path) -> Path:
    stem, _ = _strip_image_suffix(output)
    return output.with_name(stem + ".json")


def _prepare_outputs(output: Path, json_path: Path, inputs: Sequence[Path], overwrite: bool) -> tuple[Path, Path]:
    """Refuse outputs that are inputs, lie inside an input, or exist without ``--overwrite``."""
    from .io import check_output_path, image_format

    out = check_output_path(output, inputs)
    record = check_output_path(json_path, inputs)
    if out.suffix.lower() != ".json" and not out.name.lower().endswith(_MESH_SUFFIXES):
        fmt = image_format(out)
        if fmt in ("jpeg", "bmp"):
            raise ValueError(f"cannot write {out.name}: choose .png, .tif, .npy, .npz, .nii.gz, .mha or .nrrd")
    if out == record:
        raise ValueError(f"output {out} and its JSON record would be the same file; choose another --out")
    for path in (out, record):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    return out, record


def _existing_input(path: str | os.PathLike, what: str = "input") -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder; give a file (use `nestnet batch` for folders)")
    return p


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("napari-nestnet", "torch", "monai", "numpy", "scikit-image", "SimpleITK"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Integer inputs get integer outputs (rounded, clipped); everything else float32."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(values) >= 0.5
    return np.asarray(values, dtype=np.float32)


def _read_numbers(path: str, what: str) -> np.ndarray:
    """A ``.npy`` or text file of numbers (whitespace or commas)."""
    p = _existing_input(path, what)
    try:
        if p.suffix.lower() == ".npy":
            values = np.load(p, allow_pickle=False)
        else:
            rows = [line.replace(",", " ").split() for line in p.read_text().splitlines()]
            values = np.array([[float(v) for v in row] for row in rows if row], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {what} from {p}: {_one_line(str(exc))}; store numbers (.npy or text)") from None
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0 or not np.isfinite(values).all():
        raise ValueError(f"{what} in {p} must be a non-empty list of finite numbers")
    return values


class _Progress:
    """A tqdm bar fed by ``on_step`` (loss and PSNR in the postfix), opened at the first step.

    Opening it late keeps input errors, which the tasks raise before fitting, free of a half-drawn bar.
    """

    def __init__(self, desc: str, enabled: bool) -> None:
        self.desc, self.enabled = desc, enabled
        self.bar: Any = None

    def __call__(self, info: Any) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=info.steps, desc=self.desc, unit="step", file=sys.stderr,
                            disable=not self.enabled, dynamic_ncols=True, leave=False)
        post = {"loss": f"{info.loss:.3g}"}
        for key in ("psnr", "iou", "rel_l2"):
            if key in info.metrics:
                post[key] = f"{info.metrics[key]:.4g}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(info.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _common_kwargs(args: argparse.Namespace, on_step: Callable | None) -> dict[str, Any]:
    return {
        "model": args.model,
        "model_kwargs": args.model_kwargs,
        "steps": args.steps,
        "lr": args.lr,
        "lr_decay": args.lr_decay,
        "device": args.device,
        "seed": args.seed,
        "time_budget_s": args.time_budget,
        "on_step": on_step,
    }


def _run_task(args: argparse.Namespace, task: str, fn: Callable, *fn_args: Any, **fn_kwargs: Any) -> Any:
    """Run one task with a progress bar; returns the FitResult."""
    progress = _Progress(f"{PROG} {args.command}", not args.no_progress)
    kwargs = _common_kwargs(args, progress)
    if kwargs["steps"] is None:
        del kwargs["steps"]  # the task's own default
    try:
        return fn(*fn_args, **kwargs, **fn_kwargs)
    finally:
        progress.close()


def _record(args: argparse.Namespace, result: Any, *, inputs: dict[str, Any], output: Path,
            wall_start: float, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON record of a run."""
    best = None
    if result.best is not None:
        best = {"step": result.best.step, "metrics": result.best.metrics}
    extras = {k: v for k, v in result.extras.items()
              if k not in ("parameters", "normalisation") and not isinstance(v, np.ndarray)}
    return {
        "command": f"{PROG} {args.command}",
        "argv": list(getattr(args, "argv", [])),
        "inputs": inputs,
        "output": str(output),
        "parameters": result.extras.get("parameters", {}),
        "normalisation": result.extras.get("normalisation"),
        "metrics": result.metrics,
        "best": best,
        "steps_run": result.steps,
        "stopped_by": result.stopped_by,
        "device": result.device,
        "seconds": result.seconds,
        "total_seconds": time.perf_counter() - wall_start,
        **extras,
        **(extra or {}),
        "history": result.history,
        "versions": _versions(),
    }


def _report(args: argparse.Namespace, result: Any, output: Path, record: Path) -> None:
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items())
    best = ""
    if result.best is not None:
        best = f" (best at step {result.best.step}: " + ", ".join(
            f"{k} {v:.4g}" for k, v in result.best.metrics.items()) + ")"
    print(f"{PROG} {args.command}: wrote {output} and {record.name} in {result.seconds:.1f} s"
          + (f"; {metrics}{best}" if metrics else ""))


# --------------------------------------------------------------------------------------------------
# image tasks
# --------------------------------------------------------------------------------------------------


def _read_reference(args: argparse.Namespace) -> tuple[np.ndarray | None, Path | None]:
    if not getattr(args, "reference", None):
        return None, None
    from .io import read_image

    path = _existing_input(args.reference, "reference")
    return read_image(path)[0], path


def _anisotropic_spacing(arr: np.ndarray, meta: Any) -> tuple[float, ...] | None:
    """The grid spacing (array order) when the voxels are anisotropic, so the fit keeps the aspect.

    Isotropic data gets ``None`` (every axis spans [-1, 1]), exactly what the Python API does by default.
    """
    spatial = arr.ndim - (1 if arr.ndim == meta.ndim + 1 else 0)
    if meta.ndim != spatial or len(set(meta.spacing)) == 1:
        return None
    return meta.spacing_zyx


def _cmd_image(args: argparse.Namespace) -> int:
    """fit-image and denoise."""
    from .io import read_image, write_image, write_json
    from .tasks import denoise, fit_image

    start = time.perf_counter()
    task, tag, fn = {
        "fit-image": ("fit_image", "fit", fit_image),
        "denoise": ("denoise", "denoised", denoise),
    }[args.command]
    src = Path(args.input).expanduser()
    ref_path = Path(args.reference).expanduser() if args.reference else None
    out_path = Path(args.out) if args.out else _default_output(src, tag)
    out, record = _prepare_outputs(out_path, _json_path(out_path), [src] + ([ref_path] if ref_path else []),
                                   args.overwrite)
    _existing_input(src)  # after the output checks, which need no input
    arr, meta = read_image(src)
    reference, _ = _read_reference(args)
    result = _run_task(args, task, fn, arr, reference=reference, spacing=_anisotropic_spacing(arr, meta))
    write_image(out, _to_dtype(result.output, arr.dtype), meta, overwrite=args.overwrite)
    write_json(record, _record(args, result, inputs={"image": str(src), "reference": str(ref_path or "")},
                               output=out, wall_start=start, extra={"input_meta": meta.to_dict()}))
    _report(args, result, out, record)
    return EXIT_OK


def _sr_meta(meta: Any, scale: int, ndim: int) -> Any:
    """Geometry of the ``scale``× finer grid over the same field of view (first centre half a coarse pixel in)."""
    from .io import ImageMeta

    if meta.ndim != ndim:
        return ImageMeta.default(ndim, format=meta.format)
    spacing = np.asarray(meta.spacing) / scale
    origin = np.asarray(meta.origin) + meta.direction_matrix @ ((spacing - np.asarray(meta.spacing)) / 2.0)
    return ImageMeta(tuple(spacing), tuple(origin), meta.direction, format=meta.format, extra=dict(meta.extra))


def _cmd_sr(args: argparse.Namespace) -> int:
    from .io import read_image, write_image, write_json
    from .operators import Downsample
    from .tasks import _as_array, _check_divides, _check_scale, _image_layout, super_resolve

    start = time.perf_counter()
    src = Path(args.input).expanduser()
    ref_path = Path(args.reference).expanduser() if args.reference else None
    default = _default_output(src, f"sr{args.scale}x")
    out_path = Path(args.out) if args.out else default
    out, record = _prepare_outputs(out_path, _json_path(out_path), [src] + ([ref_path] if ref_path else []),
                                   args.overwrite)
    _existing_input(src)  # after the output checks, which need no input
    arr, meta = read_image(src)
    reference, _ = _read_reference(args)
    scale = _check_scale(args.scale)
    out_meta = _sr_meta(meta, scale, meta.ndim)
    simulated = False
    if args.simulate:
        # The input is the high-resolution truth: make its low-resolution version with the operator.
        if reference is not None:
            raise _Usage("--simulate uses the input as the reference; drop --reference")
        hr = _as_array(arr, "image")
        spatial, channels, has_c = _image_layout(hr, "image", allow_volume=True)
        _check_divides(spatial, scale, "image")
        import torch

        with torch.no_grad():
            hr_field = torch.from_numpy(hr.astype(np.float32)).reshape(*spatial, channels)
            low = Downsample(spatial, channels, scale)(hr_field)
        lowres = low.numpy() if has_c else low.numpy()[..., 0]
        reference, arr_in, out_meta, simulated = hr, lowres, meta, True
    else:
        arr_in = arr
    result = _run_task(args, "super_resolve", super_resolve, arr_in, scale=scale, reference=reference)
    write_image(out, _to_dtype(result.output, arr.dtype), out_meta, overwrite=args.overwrite)
    write_json(record, _record(args, result, inputs={"image": str(src), "reference": str(ref_path or "")},
                               output=out, wall_start=start,
                               extra={"simulated_lowres": simulated, "input_meta": meta.to_dict()}))
    _report(args, result, out, record)
    if "bicubic_metrics" in result.extras:
        print("  bicubic: " + ", ".join(f"{k} {v:.4g}" for k, v in result.extras["bicubic_metrics"].items()))
    return EXIT_OK


def _cmd_misr(args: argparse.Namespace) -> int:
    from .io import ImageMeta, read_image, write_image, write_json
    from .tasks import _check_scale, simulate_misr_frames, super_resolve_multi

    start = time.perf_counter()
    src = Path(args.input).expanduser()
    ref_path = Path(args.reference).expanduser() if args.reference else None
    out_path = Path(args.out) if args.out else _default_output(src, f"misr{args.scale}x")
    out, record = _prepare_outputs(out_path, _json_path(out_path), [src] + ([ref_path] if ref_path else []),
                                   args.overwrite)
    _existing_input(src)  # after the output checks, which need no input
    scale = _check_scale(args.scale)
    arr, meta = read_image(src)
    reference, _ = _read_reference(args)
    if (args.shifts is None) != (args.rotations is None):
        raise _Usage("give both --shifts and --rotations (one per frame), or neither with --simulate")
    if args.shifts is None:
        if not args.simulate:
            raise _Usage("misr needs --shifts and --rotations (one per frame)")
        # A default sub-pixel pattern: four frames offset by half a low-resolution pixel.
        half = scale / 2.0
        shifts = np.array([[0.0, 0.0], [half, 0.0], [0.0, half], [half, half]])
        rotations = np.zeros(4)
    else:
        shifts = _read_numbers(args.shifts, "shifts")
        if shifts.ndim == 1 and shifts.size == 2:
            shifts = shifts.reshape(1, 2)  # one frame written as a single line
        rotations = _read_numbers(args.rotations, "rotations").reshape(-1)
    if args.simulate:
        if reference is not None:
            raise _Usage("--simulate uses the input as the reference; drop --reference")
        frames = simulate_misr_frames(arr, shifts, rotations, scale)
        reference = arr
        hr_meta = meta
    else:
        frames = arr
        if meta.ndim >= 2 and arr.ndim >= 3:
            sp = np.asarray(meta.spacing[:2]) / scale
            hr_meta = ImageMeta(tuple(sp), tuple(meta.origin[:2]), (1.0, 0.0, 0.0, 1.0), format=meta.format)
        else:
            hr_meta = None
    result = _run_task(args, "super_resolve_multi", super_resolve_multi, frames, shifts=shifts, rotations=rotations,
                       scale=scale, reference=reference)
    out_arr = _to_dtype(result.output, arr.dtype)
    write_image(out, out_arr, hr_meta if hr_meta is not None and hr_meta.ndim == 2 else None,
                overwrite=args.overwrite)
    write_json(record, _record(args, result, inputs={"frames": str(src), "reference": str(ref_path or ""),
                                                     "shifts": args.shifts, "rotations": args.rotations},
                               output=out, wall_start=start, extra={"simulated_frames": bool(args.simulate)}))
    _report(args, result, out, record)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# CT
# --------------------------------------------------------------------------------------------------


def _parse_angles(spec: str | None, n_angles: int) -> np.ndarray:
    if spec is None:
        return np.linspace(0.0, 180.0, n_angles, endpoint=False)
    from .batch import parse_angles

    return parse_angles(spec)


def _ct_recipe(args: argparse.Namespace) -> dict[str, Any]:
    """The CT recipe options given on the command line (the task's defaults otherwise)."""
    out: dict[str, Any] = {}
    if args.tv_weight is not None:
        out["tv_weight"] = args.tv_weight
    if args.data_filter is not None:
        out["data_filter"] = None if args.data_filter == "none" else args.data_filter
    return out


def _picture_safe(values: np.ndarray, fmt: str) -> tuple[np.ndarray, list[float] | None]:
    """Pictures hold [0, 1] floats: min–max scale a reconstruction for PNG, keep it as is elsewhere."""
    if fmt not in _PICTURE_FORMATS:
        return values.astype(np.float32), None
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return scaled.astype(np.float32), [lo, hi]


def _cmd_ct(args: argparse.Namespace) -> int:
    from .io import ImageMeta, image_format, read_image, write_image, write_json
    from .tasks import ct_reconstruct

    start = time.perf_counter()
    src = Path(args.input).expanduser()
    ref_path = Path(args.reference).expanduser() if args.reference else None
    out_path = Path(args.out) if args.out else _default_output(src, "recon")
    out, record = _prepare_outputs(out_path, _json_path(out_path), [src] + ([ref_path] if ref_path else []),
                                   args.overwrite)
    _existing_input(src, "sinogram")  # after the output checks, which need no input
    sino, meta = read_image(src)
    if sino.ndim != 2:
        raise ValueError(f"sinogram {src.name} must be 2-D, got shape {sino.shape}; give one slice per file")
    n_angles = sino.shape[1] if args.layout == "skimage" else sino.shape[0]
    angles = _parse_angles(args.angles, n_angles)
    reference, _ = _read_reference(args)
    result = _run_task(args, "ct_reconstruct", ct_reconstruct, sino, angles, layout=args.layout,
                       output_size=args.output_size, filter_name=args.filter, reference=reference,
                       **_ct_recipe(args))
    # Pixels as wide as the detector bins (numpy rows are SimpleITK's y axis).
    det_spacing = meta.spacing[1] if args.layout == "skimage" else meta.spacing[0]
    out_meta = ImageMeta((det_spacing, det_spacing), meta.origin, meta.direction, format=meta.format)
    values, display = _picture_safe(result.output, image_format(out))
    if display is not None and np.dtype(sino.dtype) == np.uint16:
        out_meta.extra["dtype"] = "uint16"
    write_image(out, values, out_meta, overwrite=args.overwrite)
    extra = {"fbp_metrics": result.extras.get("fbp_metrics"), "png_scaled_from": display,
             "input_meta": meta.to_dict()}
    write_json(record, _record(args, result, inputs={"sinogram": str(src), "reference": str(ref_path or "")},
                               output=out, wall_start=start, extra=extra))
    _report(args, result, out, record)
    if result.extras.get("fbp_metrics"):
        print("  FBP: " + ", ".join(f"{k} {v:.4g}" for k, v in result.extras["fbp_metrics"].items()))
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# occupancy and PINN
# --------------------------------------------------------------------------------------------------


def _binary_volume(arr: np.ndarray, name: str) -> np.ndarray:
    """A label or probability volume as booleans: floats in [0, 1] at 0.5, anything else > 0."""
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3-D volume (D, H, W); got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf values; clean it first")
        if arr.min() >= 0 and arr.max() <= 1:
            return arr >= 0.5
    return arr > 0


def _cmd_occupancy(args: argparse.Namespace) -> int:
    from .io import ImageMeta, check_output_path, read_image, write_image, write_json
    from .tasks import export_surface, extract_surface, fit_occupancy, voxelize

    start = time.perf_counter()
    src = Path(args.input).expanduser()
    is_mesh = src.name.lower().endswith(_MESH_SUFFIXES)
    out_path = Path(args.out) if args.out else _default_output(src, "occupancy", ".npy" if is_mesh else None)
    out, record = _prepare_outputs(out_path, _json_path(out_path), [src], args.overwrite)
    _existing_input(src)  # after the output checks, which need no input
    surface = None
    if args.surface:
        surface = check_output_path(Path(args.surface).expanduser(), [src, out, record])
        if surface.exists() and not args.overwrite:
            raise FileExistsError(f"{surface} exists; pass --overwrite to replace it")
    if is_mesh:
        volume, grid = voxelize(src, args.resolution, padding=args.padding, return_grid=True)
        spacing, origin = tuple(grid.spacing), tuple(grid.origin)
        # The voxel grid's place in the mesh's space, so the volume overlays the mesh in a viewer.
        meta = ImageMeta(tuple(reversed(spacing)), tuple(reversed(origin)), tuple(np.eye(3).ravel()))
    else:
        arr, meta = read_image(src)
        volume = _binary_volume(arr, f"volume {src.name}")
        spacing = meta.spacing_zyx if meta.ndim == 3 else None
        origin = meta.origin_zyx if meta.ndim == 3 else None
    kwargs: dict[str, Any] = {"spacing": spacing}
    if args.batch_size is not None:
        kwargs["batch_size"] = args.batch_size
    result = _run_task(args, "fit_occupancy", fit_occupancy, volume, reference=volume, **kwargs)
    write_image(out, np.asarray(result.output, dtype=np.float32), meta, overwrite=args.overwrite)
    extra: dict[str, Any] = {"resolution": args.resolution if is_mesh else None,
                             "padding": args.padding if is_mesh else None,
                             "volume_shape": list(volume.shape), "surface": str(surface) if surface else None}
    if surface is not None:
        verts, faces = extract_surface(result, level=args.level, spacing=spacing, origin=origin)
        export_surface(surface, verts, faces, overwrite=args.overwrite)
        extra["surface_vertices"], extra["surface_faces"] = int(len(verts)), int(len(faces))
    write_json(record, _record(args, result, inputs={"mesh" if is_mesh else "volume": str(src)},
                               output=out, wall_start=start, extra=extra))
    _report(args, result, out, record)
    return EXIT_OK


def _cmd_pinn(args: argparse.Namespace) -> int:
    from .io import write_image, write_json
    from .tasks import solve_convection

    start = time.perf_counter()
    beta_tag = f"{args.beta:g}".replace(".", "p")
    out_path = Path(args.out) if args.out else Path(f"pinn_beta{beta_tag}.npy")
    out, record = _prepare_outputs(out_path, _json_path(out_path), [], args.overwrite)
    kwargs = {k: getattr(args, k) for k in ("nx", "nt") if getattr(args, k) is not None}
    result = _run_task(args, "solve_convection", solve_convection, args.beta, **kwargs)
    write_image(out, np.asarray(result.output, dtype=np.float32), overwrite=args.overwrite)
    write_json(record, _record(args, result, inputs={"beta": args.beta}, output=out, wall_start=start))
    _report(args, result, out, record)
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# demo
# --------------------------------------------------------------------------------------------------


def demo_phantom(size: int) -> np.ndarray:
    """The Shepp–Logan phantom at ``size``², zero outside the inscribed circle (``radon(circle=True)``)."""
    from skimage.data import shepp_logan_phantom
    from skimage.transform import resize

    image = resize(shepp_logan_phantom(), (size, size), anti_aliasing=True)
    offset = np.arange(size) - size // 2
    image[offset[:, None] ** 2 + offset[None, :] ** 2 > (size // 2) ** 2] = 0.0
    return image.astype(np.float32)


def _save_figure(path: Path, panels: list[tuple[str, np.ndarray]]) -> None:
    """Side-by-side grey panels written atomically (temporary file, then rename)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(panels), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    lo = min(float(p.min()) for _, p in panels)
    hi = max(float(p.max()) for _, p in panels)
    for i, (title, image) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _cmd_demo(args: argparse.Namespace) -> int:
    from skimage.transform import radon

    from .io import write_image, write_json
    from .tasks import ct_reconstruct

    start = time.perf_counter()
    out_dir = Path(args.out).expanduser()
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; give a folder")
    # The demo replaces its own earlier outputs (re-running `make demo` must work).
    figure, record, recon = out_dir / "ct_demo.png", out_dir / "ct_demo.json", out_dir / "ct_demo_nestnet.npy"
    size = args.size
    phantom = demo_phantom(size)
    theta = np.linspace(0.0, 180.0, args.n_angles, endpoint=False)
    sinogram = radon(phantom.astype(np.float64), theta=theta, circle=True)
    rng = np.random.default_rng(args.seed)
    sinogram = sinogram + args.noise * float(np.abs(sinogram).max()) * rng.standard_normal(sinogram.shape)
    print(f"{PROG} demo: {size}×{size} Shepp–Logan phantom, {args.n_angles} views over 0–180°, "
          f"{args.noise:.1%} noise; fitting {args.model} for {args.steps} steps ...")
    result = _run_task(args, "ct_reconstruct", ct_reconstruct, sinogram, theta, layout="skimage",
                       reference=phantom, **_ct_recipe(args))
    fbp, fbp_m, m = result.extras["fbp"], result.extras["fbp_metrics"], result.metrics
    lines = [
        f"  {'method':<10}{'PSNR (dB)':>10}{'SSIM':>8}",
        f"  {'FBP':<10}{fbp_m['psnr']:>10.2f}{fbp_m['ssim']:>8.3f}",
        f"  {args.model:<10}{m['psnr']:>10.2f}{m['ssim']:>8.3f}   (final iterate, step {result.steps})",
    ]
    if result.best is not None:
        b = result.best.metrics
        lines.append(f"  {'':<10}{b['psnr']:>10.2f}{b['ssim']:>8.3f}   (best iterate, step {result.best.step})")
    print("\n".join(lines))
    _save_figure(figure, [
        ("phantom", phantom),
        (f"FBP  {fbp_m['psnr']:.2f} dB", fbp),
        (f"{args.model}  {m['psnr']:.2f} dB", result.output),
    ])
    write_image(recon, result.output, overwrite=True)
    write_json(record, _record(args, result, inputs={"phantom": f"shepp_logan {size}x{size}",
                                                     "angles_deg": theta.tolist(), "noise": args.noise},
                               output=recon, wall_start=start,
                               extra={"fbp_metrics": fbp_m, "figure": str(figure)}))
    delta = m["psnr"] - fbp_m["psnr"]
    print(f"{PROG} demo: {args.model} is {abs(delta):.2f} dB {'above' if delta >= 0 else 'below'} FBP; "
          f"wrote {figure}, {record.name} and {recon.name} in {time.perf_counter() - start:.0f} s")
    return EXIT_OK


# --------------------------------------------------------------------------------------------------
# parser
# --------------------------------------------------------------------------------------------------


def _add_fit_options(
    p: argparse.ArgumentParser,
    *,
    reference: bool = True,
    default_steps: int | None = None,
    out_default: str | None = None,
    out_help: str = "output file (default: beside the input, tagged with the task)",
) -> None:
    from monai_nets import available_networks

    g = p.add_argument_group("fitting")
    g.add_argument("--model", default="nestnet", choices=available_networks(), help="network (default: nestnet)")
    g.add_argument("--model-kwargs", type=_json_arg, default=None, metavar="JSON",
                   help='network arguments, e.g. \'{"hidden_channels": [128, 128]}\'')
    g.add_argument("--steps", type=_positive_int_arg, default=default_steps,
                   help="optimisation steps (default: the task's)")
    g.add_argument("--lr", type=_positive_float_arg, default=None,
                   help="learning rate (default: per model and task, see reconstruct.tasks)")
    g.add_argument("--lr-decay", type=_positive_float_arg, default=0.1,
                   help="factor the learning rate reaches at the last step (default 0.1)")
    g.add_argument("--device", default="auto", help="auto (default: CUDA when present), cpu, cuda or cuda:N")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--time-budget", type=_positive_float_arg, default=None, metavar="SECONDS",
                   help="stop fitting after this many seconds")
    if reference:
        g.add_argument("--reference", default=None, metavar="FILE",
                       help="ground truth on the output grid: enables PSNR/SSIM and the best iterate")
    o = p.add_argument_group("output")
    o.add_argument("--out", "-o", default=out_default, help=out_help)
    o.add_argument("--overwrite", action="store_true", help="replace existing output files")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_ct_recipe_options(p: argparse.ArgumentParser) -> None:
    from .radon import FILTER_NAMES

    p.add_argument("--tv-weight", type=_nonneg_float_arg, default=None,
                   help="total-variation weight (default 1e-3, see reconstruct.tasks.ct_reconstruct; 0 = off)")
    p.add_argument("--data-filter", choices=(*FILTER_NAMES, "none"), default=None,
                   help="fit FBP-filtered sinograms with this filter (default ramp: fast on fine detail) or "
                        "'none' for plain least squares")


def build_parser() -> argparse.ArgumentParser:
    """The ``nestnet`` parser: fit-image, denoise, sr, misr, ct, occupancy, pinn, demo and batch."""
    from .radon import FILTER_NAMES, LAYOUTS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="NestNet implicit neural representations: fit, denoise, super-resolve, reconstruct CT, "
                    "represent occupancy volumes and solve a PINN. Outputs keep the input's format and "
                    "geometry, with a JSON record beside them.",
        epilog="exit status: 0 done; 2 bad input or arguments (one line on stderr, nothing written); "
               "1 unexpected failure (NESTNET_DEBUG=1 shows the traceback); 130 interrupted.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("fit-image", help="fit a network to an image (representation)",
                       description="Fit a coordinate network to a 2-D grey/colour image or a 3-D volume.")
    p.add_argument("input", help="image file (PNG, TIFF, .npy/.npz, NIfTI, MHA, NRRD)")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_image)

    p = sub.add_parser("denoise", help="denoise an image by an early-stopped fit",
                       description="Denoise a 2-D image or a 3-D volume by fitting a network for a few hundred "
                                   "steps (give a clean --reference to get PSNR/SSIM and the best iterate).")
    p.add_argument("input", help="noisy image file")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_image)

    p = sub.add_parser("sr", help="single-image super-resolution",
                       description="Super-resolve an image by an integer factor: the network lives on the fine "
                                   "grid, the loss is taken after average pooling. The output's spacing is the "
                                   "input's divided by the factor.")
    p.add_argument("input", help="low-resolution image (or, with --simulate, the high-resolution truth)")
    p.add_argument("--scale", type=int, default=4, help="up-sampling factor (default 4)")
    p.add_argument("--simulate", action="store_true",
                   help="treat the input as the truth: down-sample it by --scale, super-resolve, score")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_sr)

    p = sub.add_parser("misr", help="multi-image super-resolution with known motion",
                       description="Super-resolve from K low-resolution frames with known shifts and rotations.")
    p.add_argument("input", help="frames (K, h, w[, C]) as .npy/.tif/NIfTI (or, with --simulate, one "
                                 "high-resolution image)")
    p.add_argument("--shifts", default=None, metavar="FILE",
                   help="(K, 2) per-frame (dy, dx) in high-resolution pixels (.npy or text)")
    p.add_argument("--rotations", default=None, metavar="FILE",
                   help="(K,) per-frame rotations in radians (.npy or text), as the Python API")
    p.add_argument("--scale", type=int, default=4, help="up-sampling factor (default 4)")
    p.add_argument("--simulate", action="store_true",
                   help="treat the input as the truth: make the frames from it (default motion: 4 frames "
                        "offset by half a low-resolution pixel), super-resolve, score")
    _add_fit_options(p)
    p.set_defaults(func=_cmd_misr)

    p = sub.add_parser("ct", help="CT reconstruction from a parallel-beam sinogram",
                       description="Reconstruct an image from a sinogram; prints the network's and FBP's "
                                   "PSNR/SSIM when --reference is given.")
    p.add_argument("input", help="sinogram file (2-D)")
    p.add_argument("--angles", default=None, metavar="SPEC",
                   help="degrees: start:stop:count (stop excluded, e.g. 0:180:60) or a .npy/.txt file "
                        "(default 0:180:<number of projections>)")
    p.add_argument("--layout", choices=LAYOUTS, default="skimage",
                   help="skimage = detectors x angles (default, skimage.transform.radon); torch = angles x detectors")
    p.add_argument("--output-size", type=_positive_int_arg, default=None,
                   help="side of the reconstruction (default: the detector count, as iradon)")
    p.add_argument("--filter", choices=FILTER_NAMES, default="ramp", help="FBP filter of the baseline")
    _add_ct_recipe_options(p)
    _add_fit_options(p)
    p.set_defaults(func=_cmd_ct)

    p = sub.add_parser("occupancy", help="fit an occupancy volume (from a mesh or a label volume)",
                       description="Fit an occupancy network to a binary volume, or to a mesh voxelised at "
                                   "--resolution; optionally export the fitted surface (marching cubes).")
    p.add_argument("input", help="mesh (.stl/.obj/.ply/.off/.glb) or volume (NIfTI, MHA, NRRD, .npy, TIFF)")
    p.add_argument("--resolution", type=_positive_int_arg, default=64,
                   help="voxels along the longest side when voxelising a mesh (default 64)")
    p.add_argument("--padding", type=int, default=1,
                   help="empty voxels added around a voxelised mesh (default 1: shapes that fill their "
                        "bounding box keep an outside)")
    p.add_argument("--batch-size", type=_positive_int_arg, default=None, help="voxels per step")
    p.add_argument("--surface", default=None, metavar="FILE", help="also write the fitted surface (.stl/.ply/.obj)")
    p.add_argument("--level", type=float, default=0.5, help="iso-level of the surface (default 0.5)")
    _add_fit_options(p, reference=False)
    p.set_defaults(func=_cmd_occupancy)

    p = sub.add_parser("pinn", help="solve u_t + beta u_x = 0 with a physics-informed network",
                       description="Solve 1-D convection u_t + beta u_x = 0 on x in [0, 2 pi], t in [0, 1], "
                                   "u(x, 0) = sin x (periodic); writes u on the (x, t) grid and the relative L2 "
                                   "error against sin(x - beta t).")
    p.add_argument("--beta", type=float, default=5.0, help="convection speed (default 5)")
    p.add_argument("--nx", type=_positive_int_arg, default=None, help="grid points in x")
    p.add_argument("--nt", type=_positive_int_arg, default=None, help="grid points in t")
    _add_fit_options(p, reference=False)
    p.set_defaults(func=_cmd_pinn)

    p = sub.add_parser("demo", help="CT demo: NestNet vs FBP on a phantom sinogram (PNG + JSON)",
                       description="Simulate a noisy sparse-view sinogram of the Shepp-Logan phantom, "
                                   "reconstruct it, print PSNR/SSIM of the network and of FBP, and write "
                                   "ct_demo.png (phantom | FBP | network), ct_demo.json and the reconstruction "
                                   "into --out (files of an earlier demo there are replaced).")
    p.add_argument("--size", type=_positive_int_arg, default=_DEMO_SIZE, help=f"phantom side (default {_DEMO_SIZE})")
    p.add_argument("--n-angles", type=_positive_int_arg, default=_DEMO_ANGLES,
                   help=f"views over 0-180 degrees (default {_DEMO_ANGLES})")
    p.add_argument("--noise", type=_nonneg_float_arg, default=_DEMO_NOISE,
                   help=f"Gaussian noise, fraction of the sinogram maximum (default {_DEMO_NOISE})")
    _add_ct_recipe_options(p)
    _add_fit_options(p, reference=False, default_steps=_DEMO_STEPS, out_default="demo_output",
                     out_help="output folder (default: demo_output)")
    p.set_defaults(func=_cmd_demo)

    from .batch import add_batch_parser

    add_batch_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``nestnet`` command; returns the exit status (the console script passes it to ``sys.exit``).

    Args:
        argv: arguments without the program name (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or an argparse usage error (already printed)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if argv is None and args.command != "batch":
        # Only for a real command line: restarts this process with tcmalloc when installed.
        from .runtime import reexec_with_tcmalloc

        reexec_with_tcmalloc()
    from .runtime import tune_allocator

    tune_allocator()
    try:
        return int(args.func(args) or EXIT_OK)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; nothing was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (_Usage, ValueError, TypeError, FileNotFoundError, FileExistsError, FloatingPointError, OSError) as exc:
        if os.environ.get("NESTNET_DEBUG"):
            raise
        print(f"{PROG}: error: {_one_line(str(exc)) or type(exc).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # an unexpected failure: still one line, the traceback on request
        if os.environ.get("NESTNET_DEBUG"):
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {_one_line(str(exc))} (set NESTNET_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
