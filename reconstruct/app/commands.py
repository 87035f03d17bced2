"""What each ``nestnet <task>`` command does around its task: read the inputs, write the output and the record.

The options come from the task descriptions (:mod:`reconstruct.app.cli`); this module holds what is
particular to files: which inputs a task reads (a sinogram and its angles, frames and their motion, a
mesh to voxelise), the output's default name, geometry and data type, and the run record. Every output
is checked before any input is read or any fit starts, and written atomically.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..tasks import FIT_PARAMS, TASKS, TaskSpec
from ..tasks.common import check_sinogram_layout
from .angles import parse_angles, parse_numbers
from .files import (
    check_output_path,
    check_outputs_apart,
    check_writable,
    companion_files,
    remove_written,
    write_json,
)
from .geometry import output_meta
from .images import SUPPORTED_SUFFIXES, data_files, image_format, read_image, write_image
from .memory import check_memory, mesh_volume_shape, run_estimate
from .meshes import LEVEL, MESH_FORMATS, MESH_OPTIONS, MESH_SUFFIXES
from .meta import ImageMeta
from .options import given_params
from .records import run_record
from .runtime import bar_interval

__all__ = ["run_task_command", "run_fit_command", "prepare_outputs", "existing_input", "Usage"]

PROG = "nestnet"
_PICTURE_FORMATS = ("png", "jpeg", "bmp")


class Usage(ValueError):
    """A usage error found after parsing (reported like argparse's own)."""


@dataclasses.dataclass
class Prepared:
    """A task's inputs as read from files, and how its output is written."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    out_meta: ImageMeta | None
    out_dtype: Any = None  # integer inputs get integer outputs
    inputs: dict[str, Any] = dataclasses.field(default_factory=dict)
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    # makes further outputs from the result (before anything is written); the function it returns writes them
    # and returns record fields
    finish: Callable[[Any], Callable[[], dict[str, Any]]] | None = None


# --------------------------------------------------------------------------------------------------
# paths
# --------------------------------------------------------------------------------------------------


def _strip_image_suffix(path: Path) -> tuple[str, str]:
    """``(stem, suffix)`` with compound suffixes (``.nii.gz``) kept whole."""
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


def prepare_outputs(output: Path, json_path: Path, inputs: Sequence[Path], overwrite: bool) -> tuple[Path, Path]:
    """Check the output and its record before any work: format, folder, writability, overwrite policy, inputs.

    Refuses an output that is an input (or a data file an input header names), lies inside an input,
    exists without ``--overwrite``, cannot be written (the temporary file the write uses is created in
    its folder and removed), or has a format the output cannot be written in.
    """
    readers = [*inputs, *(d for p in inputs for d in data_files(p))]
    out = check_output_path(output, readers)
    record = check_output_path(json_path, readers)
    if out.suffix.lower() == ".json":
        raise ValueError(f"cannot write the result as {out.name}: .json is its record's; choose .png, .tif, .npy, "
                         ".npz, .nii.gz, .mha or .nrrd")
    if image_format(out) in ("jpeg", "bmp"):  # image_format: one line for an unknown suffix
        raise ValueError(f"cannot write {out.name}: choose .png, .tif, .npy, .npz, .nii.gz, .mha or .nrrd")
    if out == record:
        raise ValueError(f"output {out} and its JSON record would be the same file; choose another --out")
    companions = companion_files(out)
    check_outputs_apart([out, record, *companions], readers)
    for path in (out, record, *companions):
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    check_writable(out)
    return out, record


def _prepare_surface(args: argparse.Namespace, readers: Sequence[Path], outputs: Sequence[Path]) -> Path | None:
    """``--surface`` checked like every output, and ``--level``, before any work."""
    if not getattr(args, "surface", None):
        return None
    surface = check_output_path(Path(args.surface).expanduser(), readers)
    if surface.suffix.lower() not in MESH_FORMATS:
        raise ValueError(f"cannot write the surface as {surface.name}: use one of {', '.join(MESH_FORMATS)}")
    if surface in outputs:
        raise ValueError(f"--surface {surface} is also the volume or its record; choose another name")
    if not surface.parent.is_dir():
        raise FileNotFoundError(f"the folder of --surface {surface} does not exist; create it first")
    if surface.exists() and not args.overwrite:
        raise FileExistsError(f"{surface} exists; pass --overwrite to replace it")
    check_writable(surface, "surface")
    return surface


def existing_input(path: str | Path, what: str = "input") -> Path:
    """``path`` as an existing file; one-line errors for a missing path or a folder."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} {p} does not exist")
    if p.is_dir():
        raise ValueError(f"{what} {p} is a folder; give a file (use `nestnet batch` for folders)")
    return p


def _to_dtype(values: np.ndarray, dtype: Any) -> np.ndarray:
    """Integer inputs get integer outputs (rounded, clipped); everything else float32."""
    if dtype is None:
        return np.asarray(values, dtype=np.float32)
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    if dtype.kind == "b":
        return np.asarray(values) >= 0.5
    return np.asarray(values, dtype=np.float32)


class Progress:
    """A tqdm bar fed by ``on_step`` (loss and the metric in the postfix), opened at the first step.

    Opening it late keeps input errors, which the tasks raise before fitting, free of a half-drawn bar.
    """

    def __init__(self, desc: str, enabled: bool) -> None:
        self.desc, self.enabled = desc, enabled
        self.bar: Any = None

    def __call__(self, info: Any) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=info.steps, desc=self.desc, unit="step", file=sys.stderr,
                            disable=not self.enabled, dynamic_ncols=True, leave=False,
                            mininterval=bar_interval(sys.stderr))
        post = {"loss": f"{info.loss:.3g}"}
        for key in ("psnr", "iou", "rel_l2"):
            if key in info.metrics:
                post[key] = f"{info.metrics[key]:.4g}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(info.step - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _options(spec: TaskSpec, args: argparse.Namespace, **kwargs: Any) -> dict[str, Any]:
    return {**given_params(args, FIT_PARAMS), **given_params(args, spec.params_for("cli")), **kwargs}


def _check_run(spec: TaskSpec, args: argparse.Namespace, out: Path, shape: Any, **kwargs: Any) -> None:
    """Before the fit: the output format holds the result's shape, and the run fits in memory."""
    estimate = run_estimate(spec, shape, _options(spec, args, **kwargs))
    fmt = image_format(out)
    if fmt == "png" and (len(estimate.grid) != 2 or estimate.channels not in (1, 3, 4)):
        raise ValueError(f"cannot write {out.name}: PNG holds 2-D grey or colour images and the result is "
                         f"{' x '.join(map(str, estimate.grid))}; choose .nii.gz, .tif or .npy")
    check_memory(estimate)


def run_fit_command(spec: TaskSpec, args: argparse.Namespace, *inputs: Any, **kwargs: Any) -> Any:
    """Run ``spec``'s task with the options given on the command line and a progress bar."""
    progress = Progress(f"{PROG} {args.command}", not args.no_progress)
    options = _options(spec, args, **kwargs)
    try:
        return TASKS[spec.name](*inputs, **options, on_step=progress)
    finally:
        progress.close()


def _read_reference(args: argparse.Namespace) -> np.ndarray | None:
    if not getattr(args, "reference", None):
        return None
    return read_image(existing_input(args.reference, "reference"))[0]


def _option(args: argparse.Namespace, spec: TaskSpec, name: str) -> Any:
    """A task parameter as given, else the spec's default (for names and geometry decided before the fit)."""
    return getattr(args, name, spec.param(name).default)


# --------------------------------------------------------------------------------------------------
# per task: inputs and output geometry
# --------------------------------------------------------------------------------------------------


def _anisotropic_spacing(arr: np.ndarray, meta: ImageMeta) -> tuple[float, ...] | None:
    """The grid spacing (array order) when the voxels are anisotropic, so the fit keeps the aspect."""
    spatial = arr.ndim - (1 if arr.ndim == meta.ndim + 1 else 0)
    if meta.ndim != spatial or len(set(meta.spacing)) == 1:
        return None
    return meta.spacing_zyx


def declared_bits(args: argparse.Namespace | dict[str, Any], meta: ImageMeta) -> dict[str, Any]:
    """``{"bit_depth": n}`` when the file declares a bit depth (TIFF ``BitsPerSample``) and none was given."""
    given = vars(args) if isinstance(args, argparse.Namespace) else args
    bits = meta.extra.get("bit_depth")
    return {"bit_depth": int(bits)} if bits and given.get("bit_depth") is None else {}


def _prepare_image(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    arr, meta = read_image(src)
    reference = _read_reference(args)
    if spec.name == "fit_image" and reference is None:
        reference = arr
    return Prepared((arr,), {"reference": reference, "spacing": _anisotropic_spacing(arr, meta),
                             **declared_bits(args, meta)}, meta, arr.dtype, extra={"input_meta": meta.to_dict()})


def _prepare_sr(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    from ..tasks.common import as_array, check_divides, image_layout
    from ..tasks.image import downsample

    arr, meta = read_image(src)
    reference = _read_reference(args)
    scale = spec.param("scale").check(_option(args, spec, "scale"))
    if not args.simulate:
        return Prepared((arr,), {"reference": reference, **declared_bits(args, meta)},
                        output_meta(spec, meta, {"scale": scale}), arr.dtype,
                        extra={"simulated_lowres": False, "input_meta": meta.to_dict()})
    if reference is not None:
        raise Usage("--simulate uses the input as the reference; drop --reference")
    # The input is the high-resolution truth: make its low-resolution version with the task's operator.
    hr = as_array(arr, "image")
    spatial, _, _ = image_layout(hr, "image", allow_volume=True)
    check_divides(spatial, scale, "image")
    return Prepared((downsample(hr, scale),), {"reference": hr}, meta, arr.dtype,
                    extra={"simulated_lowres": True, "input_meta": meta.to_dict()})


def _prepare_misr(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    from ..tasks import simulate_misr_frames

    scale = spec.param("scale").check(_option(args, spec, "scale"))
    arr, meta = read_image(src)
    reference = _read_reference(args)
    if (args.shifts is None) != (args.rotations is None):
        raise Usage("give both --shifts and --rotations (one per frame), or neither with --simulate")
    if args.shifts is None:
        if not args.simulate:
            raise Usage("misr needs --shifts and --rotations (one per frame)")
        half = scale / 2.0  # a default sub-pixel pattern: four frames offset by half a low-resolution pixel
        shifts = np.array([[0.0, 0.0], [half, 0.0], [0.0, half], [half, half]])
        rotations = np.zeros(4)
    else:
        shifts = parse_numbers(args.shifts, "shifts")
        if shifts.ndim == 1 and shifts.size == 2:
            shifts = shifts.reshape(1, 2)  # one frame written as a single line
        rotations = parse_numbers(args.rotations, "rotations").reshape(-1)
    inputs = {"shifts": args.shifts, "rotations": args.rotations}
    if args.simulate:
        if reference is not None:
            raise Usage("--simulate uses the input as the reference; drop --reference")
        frames = simulate_misr_frames(arr, shifts, rotations, scale)
        return Prepared((frames,), {"shifts": shifts, "rotations": rotations, "reference": arr}, meta, arr.dtype,
                        inputs=inputs, extra={"simulated_frames": True})
    # the frames' in-plane grid, made finer by the SR rule
    out_meta = output_meta(spec, meta, {"scale": scale}, ndim=2) if meta.ndim >= 2 and arr.ndim >= 3 else None
    return Prepared((arr,), {"shifts": shifts, "rotations": rotations, "reference": reference,
                             **declared_bits(args, meta)}, out_meta, arr.dtype,
                    inputs=inputs, extra={"simulated_frames": False})


def _picture_safe(values: np.ndarray, fmt: str) -> tuple[np.ndarray, list[float] | None]:
    """Pictures hold [0, 1] floats: min–max scale a reconstruction for PNG, keep it as is elsewhere."""
    if fmt not in _PICTURE_FORMATS:
        return values.astype(np.float32), None
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    return scaled.astype(np.float32), [lo, hi]


def _prepare_ct(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    sino, meta = read_image(src)
    if sino.ndim != 2:
        raise ValueError(f"sinogram {src.name} must be 2-D, got shape {sino.shape}; give one slice per file")
    layout = spec.param("layout").check(_option(args, spec, "layout"))
    check_sinogram_layout(sino, layout)
    n_angles = sino.shape[1] if layout == "skimage" else sino.shape[0]
    angles = parse_angles(args.angles) if args.angles is not None else np.linspace(0.0, 180.0, n_angles,
                                                                                   endpoint=False)
    out_meta = output_meta(spec, meta, {"layout": layout})
    out_meta.extra.pop("dtype", None)
    if np.dtype(sino.dtype) == np.uint16 and image_format(args.out_path) in _PICTURE_FORMATS:
        out_meta.extra["dtype"] = "uint16"
    return Prepared((sino, angles), {"reference": _read_reference(args)}, out_meta,
                    inputs={"angles": args.angles}, extra={"input_meta": meta.to_dict()})


def _prepare_ct3d(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    """A 3-D projection file: a sinogram stack (Z, angles, detectors) or cone-beam projections (views, rows, cols).

    A file with geometry (NIfTI, MetaImage, NRRD) gives the detector pitch (its last axis's spacing) and, for a
    stack, the slice spacing (its first axis's) unless ``--det-spacing`` / ``--slice-spacing`` are given. The
    default angles are 0:180 for parallel beam and 0:360 for fan and cone beam, one per projection.
    """
    data, meta = read_image(src)
    if data.ndim != 3:
        raise ValueError(f"projections {src.name} must be 3-D ((Z, angles, detectors) or (views, rows, cols)); got "
                         f"shape {data.shape}; use `nestnet ct` for one 2-D sinogram")
    geometry = spec.param("geometry").check(_option(args, spec, "geometry"))
    n_angles = data.shape[0] if geometry == "cone" else data.shape[1]
    full = 180.0 if geometry == "parallel" else 360.0
    angles = parse_angles(args.angles) if args.angles is not None else np.linspace(0.0, full, n_angles,
                                                                                   endpoint=False)
    kwargs: dict[str, Any] = {"reference": _read_reference(args)}
    from_file: dict[str, float] = {}
    if meta.format in ("nifti", "mha", "nrrd") and meta.ndim == 3:
        spacing = meta.spacing_zyx
        if "det_spacing" not in vars(args):
            from_file["det_spacing"] = float(spacing[2])
        if geometry != "cone" and "slice_spacing" not in vars(args):
            from_file["slice_spacing"] = float(spacing[0])
    kwargs.update(from_file)
    return Prepared((data, angles), kwargs, None, inputs={"angles": args.angles},
                    extra={"input_meta": meta.to_dict(), "geometry_from_file": from_file})


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


def _prepare_occupancy(spec: TaskSpec, args: argparse.Namespace, src: Path) -> Prepared:
    from ..occupancy import extract_surface, voxelize
    from .meshes import export_surface, read_mesh

    if src.name.lower().endswith(MESH_SUFFIXES):
        resolution, padding = (p.check(getattr(args, p.name, p.default)) for p in MESH_OPTIONS)
        mesh = read_mesh(src)
        _check_run(spec, args, args.out_path, mesh_volume_shape(mesh, resolution, padding))  # before voxelising
        volume, grid = voxelize(mesh, resolution, padding=padding, return_grid=True)
        spacing, origin = tuple(grid.spacing), tuple(grid.origin)
        # The voxel grid's place in the mesh's space, so the volume overlays the mesh in a viewer.
        meta = ImageMeta(tuple(reversed(spacing)), tuple(reversed(origin)), tuple(np.eye(3).ravel()))
        extra = {"resolution": resolution, "padding": padding}
    else:
        arr, meta = read_image(src)
        volume = _binary_volume(arr, f"volume {src.name}")
        spacing = meta.spacing_zyx if meta.ndim == 3 else None
        origin = meta.origin_zyx if meta.ndim == 3 else None
        extra = {"resolution": None, "padding": None}
    extra.update(volume_shape=list(volume.shape), surface=str(args.surface_path) if args.surface_path else None)

    def finish(result: Any) -> Callable[[], dict[str, Any]]:
        if args.surface_path is None:
            return dict
        # the surface is made before anything is written, so a failure leaves no volume without its record
        verts, faces = extract_surface(result, level=args.level, spacing=spacing, origin=origin)

        def write() -> dict[str, Any]:
            export_surface(args.surface_path, verts, faces, overwrite=args.overwrite)
            return {"surface_vertices": int(len(verts)), "surface_faces": int(len(faces))}

        return write

    return Prepared((volume,), {"reference": volume, "spacing": spacing}, meta, extra=extra, finish=finish)


_PREPARE: dict[str, Callable[[TaskSpec, argparse.Namespace, Path], Prepared]] = {
    "fit_image": _prepare_image,
    "denoise": _prepare_image,
    "super_resolve": _prepare_sr,
    "super_resolve_multi": _prepare_misr,
    "ct_reconstruct": _prepare_ct,
    "ct_reconstruct_3d": _prepare_ct3d,
    "fit_occupancy": _prepare_occupancy,
}


def _output_tag(spec: TaskSpec, args: argparse.Namespace) -> str:
    tags = {"fit_image": "fit", "denoise": "denoised", "ct_reconstruct": "recon", "ct_reconstruct_3d": "recon3d",
            "fit_occupancy": "occupancy"}
    if spec.name in tags:
        return tags[spec.name]
    return f"{spec.command}{_option(args, spec, 'scale')}x"


def _report(args: argparse.Namespace, result: Any, output: Path, record: Path) -> None:
    def text(metrics: dict[str, float]) -> str:
        return ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())

    best = f" (best at step {result.best.step}, oracle: {text(result.best.metrics)})" if result.best else ""
    metrics = text(result.metrics)
    print(f"{PROG} {args.command}: wrote {output} and {record.name} in {result.seconds:.1f} s"
          + (f"; {metrics}{best}" if metrics else ""))
    for name, key in (("FBP", "fbp_metrics"), ("bicubic", "bicubic_metrics")):
        if result.extras.get(key):
            print(f"  {name}: {text(result.extras[key])}")


def run_task_command(spec: TaskSpec, args: argparse.Namespace) -> int:
    """``nestnet <task> ...``: every output checked first, then inputs read, memory checked, the task run, writes.

    The outputs (result, record, surface) are checked before any input is read: format, folder,
    writability (the temporary file is created and removed), the overwrite policy, and that none is an
    input. A failure while writing removes what this run wrote, so no partial set of outputs is left.
    """
    start = time.perf_counter()
    if spec.name == "solve_convection":
        beta = _option(args, spec, "beta")
        src, read_paths = None, []
        out_path = Path(args.out) if args.out else Path(f"pinn_beta{f'{beta:g}'.replace('.', 'p')}.npy")
    else:
        src = Path(args.input).expanduser()
        read_paths = [src] + [Path(p).expanduser() for p in (getattr(args, "reference", None),
                                                              getattr(args, "angles", None),
                                                              getattr(args, "shifts", None),
                                                              getattr(args, "rotations", None))
                              if p and not (":" in str(p) and not Path(p).expanduser().exists())]
        is_mesh = src.name.lower().endswith(MESH_SUFFIXES)
        out_path = Path(args.out) if args.out else _default_output(src, _output_tag(spec, args),
                                                                   ".npy" if is_mesh else None)
    out, record = prepare_outputs(out_path, _json_path(out_path), read_paths, args.overwrite)
    args.out_path = out
    args.surface_path = _prepare_surface(args, read_paths, [out, record])
    if spec.name == "fit_occupancy":
        args.level = LEVEL.check(getattr(args, "level", LEVEL.default))
    if src is None:
        prepared = Prepared((), {}, None, inputs={"beta": beta})
        _check_run(spec, args, out, None)
    else:
        existing_input(src, {"ct_reconstruct": "sinogram", "ct_reconstruct_3d": "projections"}.get(spec.name, "input"))
        prepared = _PREPARE[spec.name](spec, args, src)
        prepared.inputs = {"input": str(src), "reference": str(args.reference or ""), **prepared.inputs}
        _check_run(spec, args, out, np.shape(prepared.args[0]), **prepared.kwargs)
    result = run_fit_command(spec, args, *prepared.args, **prepared.kwargs)
    if spec.output_grid == "own":  # the task's own grid (the PINN's x, t), from the axes it reports
        prepared.out_meta = output_meta(spec, None, {}, extras=result.extras)
    values = _to_dtype(result.output, prepared.out_dtype)
    extra = dict(prepared.extra)
    if spec.name == "ct_reconstruct":
        values, extra["png_scaled_from"] = _picture_safe(result.output, image_format(out))
    write_more = prepared.finish(result) if prepared.finish is not None else dict
    written: list[Path] = []
    try:
        write_image(out, values, prepared.out_meta, overwrite=args.overwrite)
        written += [out, *(c for c in companion_files(out) if c.exists())]
        extra.update(write_more())
        if args.surface_path is not None:
            written.append(args.surface_path)
        write_json(record, run_record(result, task=spec.name, inputs=prepared.inputs, output=out,
                                      command=f"{PROG} {args.command}", argv=list(getattr(args, "argv", [])),
                                      total_seconds=time.perf_counter() - start, **extra))
    except BaseException:
        remove_written(written)
        raise
    _report(args, result, out, record)
    return 0
