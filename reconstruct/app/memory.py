"""The memory a run will need, estimated before anything large is allocated, and the check that refuses it.

A fit holds, per point it trains on, the activations of every layer for the backward pass (about three
float32 copies of them, measured: 3.4 for NestNet and 3.5 for SIREN on 256², full batch); per
parameter the weights, their gradients, Adam's two moments and a best-iterate snapshot (24 bytes); and
per grid point of the output its coordinates, the rendered output and the float64 copies the metrics,
the normalisation and the baselines take (about 48 bytes a value).  The estimate errs low (no fixed
overhead, no allocator slack): a run it refuses cannot fit; a run it passes may still be tight.

:func:`run_estimate` sizes a task's run from its input's shape and the values it runs with (what
``nestnet <task>`` and ``nestnet batch`` pass the task function); :func:`check_memory` compares it
with the memory available (host RAM, a container's cgroup limit, and a CUDA device's free memory)
and refuses with one line naming the size, the estimate and what is available.  Set
``NESTNET_SKIP_MEMORY_CHECK=1`` to skip it (e.g. with a large swap).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..tasks.spec import FIT_PARAMS, FitSettings, TaskSpec

__all__ = ["Estimate", "MemoryLimit", "run_estimate", "check_memory", "available_memory", "mesh_volume_shape",
           "format_bytes"]

_ACTIVATION_COPIES = 3  # float32 copies of every layer's activations a training step holds
_PARAM_BYTES = 24  # weights, gradients, Adam moments, a best-iterate snapshot (float32 each) and slack
_VALUE_BYTES = 48  # per output value: coordinates, output, reference and float64 copies (metrics, baselines)
_CHUNK = 65536  # points per rendering pass (reconstruct.grid.DEFAULT_CHUNK_SIZE)
_FULL_BATCH_MAX = 1 << 18  # fit_image/denoise switch to random batches of 65,536 points above this
_FIT_NAMES = {p.name for p in FIT_PARAMS}


class MemoryLimit(ValueError):
    """A run that cannot fit in the memory available (a one-line message)."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """What a run needs: ``host`` bytes of RAM and ``device`` bytes on the accelerator (0 on the CPU).

    ``size`` names what sets it (``"output 320000 x 320000 pixels"``), ``hint`` how to lower it.
    """

    host: int
    device: int
    size: str
    hint: str
    parameters: int = 0
    grid: tuple[int, ...] = ()
    channels: int = 1
    on: str = "cpu"


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _cgroup_free() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or None without one."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
    except OSError:
        return None
    if not limit.isdigit() or not used.isdigit():
        return None
    return max(0, int(limit) - int(used))


def available_memory(device: Any = "cpu") -> tuple[int, int | None]:
    """``(host bytes available, device bytes free or None)`` for a run on ``device``."""
    import psutil

    host = int(psutil.virtual_memory().available)
    cgroup = _cgroup_free()
    if cgroup is not None:
        host = min(host, cgroup)
    free = None
    if str(device).startswith("cuda"):
        import torch

        try:
            free = int(torch.cuda.mem_get_info(torch.device(device))[0])
        except (RuntimeError, AssertionError, ValueError):
            free = None
    return host, free


def _network_size(spec: TaskSpec, settings: FitSettings, spatial_dims: int, out_channels: int,
                  shape: Sequence[int]) -> tuple[int, int]:
    """``(parameters, activations per point)`` of the run's network, built on the meta device (no memory)."""
    import torch

    from monai_nets import get_network

    kwargs = spec.network_kwargs(settings, shape)
    try:
        with torch.device("meta"):
            net = get_network(settings.model, spatial_dims=spatial_dims, out_channels=out_channels, **kwargs)
    except Exception:  # a network that computes while it is built (meta tensors have no values): count widths
        hidden = kwargs.get("hidden_channels", (256, 256))
        widths = [int(hidden)] * 2 if isinstance(hidden, (int, float)) else [int(w) for w in hidden]
        sizes = [2 * spatial_dims * 32, *widths, out_channels]
        return sum(a * b + b for a, b in zip(sizes, sizes[1:])), sum(sizes)
    params = sum(p.numel() for p in net.parameters())
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    per_point = (linears[0].in_features + sum(m.out_features for m in linears)) if linears else 2 * spatial_dims + 512
    return int(params), int(per_point)


def _times(shape: Sequence[int]) -> str:
    return " x ".join(str(int(s)) for s in shape)


def _task_grid(spec: TaskSpec, shape: Sequence[int] | None, values: Mapping[str, Any]
               ) -> tuple[tuple[int, ...], int, int | None, str, str]:
    """``(grid, channels, points per step or None for all, size text, hint)`` of a task's run."""
    def value(name: str) -> Any:
        got = values.get(name)
        return spec.param(name).default if got is None and name not in values else got

    shape = tuple(int(s) for s in (shape or ()))
    if spec.name == "solve_convection":
        nx, nt = int(value("nx")), int(value("nt"))
        points = int(value("n_collocation")) + int(value("n_initial")) + int(value("n_boundary"))
        return (nx, nt), 1, points, f"grid {nx} x {nt} points", "lower --nx/--nt"
    if spec.name == "fit_occupancy":
        batch = value("batch_size")
        n = math.prod(shape)
        return shape, 1, None if batch is None or batch >= n else int(batch), f"volume {_times(shape)} voxels", \
            "lower --resolution (or give a smaller volume)"
    if spec.name == "ct_reconstruct":
        layout = value("layout")
        det = shape[0] if layout == "skimage" else shape[-1]
        size = value("output_size") or det
        return (size, size), 1, None, f"output {size} x {size} pixels", "lower --output-size"
    if spec.name == "ct_reconstruct_3d":
        from ..operators_3d import default_samples_per_ray

        cone = value("geometry") == "cone"
        size = value("output_size") or shape[-1]
        slices = (value("output_slices") or shape[1]) if cone else shape[0]
        grid = (slices, size, size)
        if not cone:
            return grid, 1, None, f"volume {_times(grid)} voxels", "lower --output-size"
        rows = max(1, int(value("batch_size")) // shape[-1])
        samples = value("samples_per_ray") or default_samples_per_ray(grid, (1.0, 1.0, 1.0))
        return grid, 1, rows * shape[-1] * samples, f"volume {_times(grid)} voxels", \
            "lower --batch-size or --samples-per-ray"
    if spec.name == "super_resolve_multi":
        scale = int(value("scale"))
        spatial = shape[1:3]
        channels = shape[3] if len(shape) == 4 else 1
        hr = tuple(s * scale for s in spatial)
        return hr, channels, None, f"output {_times(hr)} pixels ({scale}x)", "lower --scale"
    channels = shape[-1] if len(shape) == 3 and shape[-1] in (1, 3, 4) else 1
    spatial = shape[:-1] if channels > 1 or (len(shape) == 3 and shape[-1] == 1) else shape
    if spec.name == "super_resolve":
        scale = int(value("scale"))
        hr = tuple(s * scale for s in spatial)
        return hr, channels, None, f"output {_times(hr)} pixels ({scale}x)", "lower --scale"
    batch = value("batch_size") if "batch_size" in {p.name for p in spec.params} else None
    n = math.prod(spatial)
    if batch is None and n > _FULL_BATCH_MAX:
        batch = 65536
    return spatial, channels, batch, f"image {_times(spatial)}", "give a smaller image (or a smaller --batch-size)"


def run_estimate(spec: TaskSpec, shape: Sequence[int] | None, values: Mapping[str, Any]) -> Estimate:
    """The memory a run of ``spec``'s task needs.

    Args:
        spec: the task.
        shape: the main input's array shape (an occupancy volume's shape for a mesh, see
            :func:`mesh_volume_shape`; None for the PINN).
        values: what the task function is called with (fit settings and task parameters; absent ones
            take their defaults).
    """
    fit = {k: v for k, v in values.items() if k in _FIT_NAMES and k != "preview_every"}
    settings = FitSettings.create(spec, **fit)
    grid, channels, points, size, hint = _task_grid(spec, shape, values)
    n = math.prod(grid)
    step_points = n if points is None else points if spec.name in ("solve_convection", "ct_reconstruct_3d") \
        else min(points, n)
    dims = 2 if spec.name == "solve_convection" else len(grid)
    params, per_point = _network_size(spec, settings, dims, channels, grid)
    training = step_points * per_point * 4 * _ACTIVATION_COPIES
    rendering = min(n, _CHUNK) * per_point * 4 * 2
    weights = params * _PARAM_BYTES
    arrays = n * channels * _VALUE_BYTES
    on_device = str(settings.device).startswith("cuda")
    compute = training + rendering + weights
    if weights > max(training, arrays):
        size, hint = f"network {params:,} parameters", "give smaller hidden_channels in --model-kwargs"
    elif points is not None and training > arrays:
        hint = "lower --batch-size" if spec.name != "solve_convection" else "lower --n-collocation"
    if on_device:
        return Estimate(arrays, compute + n * channels * 4 * 3, size, hint, params, grid, channels,
                        str(settings.device))
    return Estimate(arrays + compute, 0, size, hint, params, grid, channels, "cpu")


def check_memory(estimate: Estimate) -> None:
    """Refuse a run whose estimate exceeds the memory available on its device (see the module docstring).

    Raises:
        MemoryLimit: one line naming the size, the estimate, the memory available and how to lower it.
    """
    if os.environ.get("NESTNET_SKIP_MEMORY_CHECK", "").strip().lower() in ("1", "true", "yes", "on"):
        return
    device = estimate.on
    host, free = available_memory(device)
    where, need, have = None, 0, 0
    if estimate.host > host:
        where, need, have = "memory", estimate.host, host
    elif free is not None and estimate.device > free:
        where, need, have = f"memory on {device}", estimate.device, free
    if where is None:
        return
    raise MemoryLimit(f"{estimate.size}: the run needs about {format_bytes(need)} of {where} but "
                      f"{format_bytes(have)} is available; {estimate.hint} (NESTNET_SKIP_MEMORY_CHECK=1 "
                      "skips this check)")


def mesh_volume_shape(mesh: Any, resolution: int, padding: int) -> tuple[int, int, int]:
    """The ``(D, H, W)`` shape :func:`reconstruct.occupancy.voxelize` gives ``mesh`` (cubic cells, array order)."""
    import numpy as np

    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    extent = bounds[1] - bounds[0]
    longest = float(extent.max())
    if not longest > 0:
        return (2 * padding + 1,) * 3
    cell = longest / int(resolution)
    counts = [max(1, math.ceil(e / cell - 1e-9)) + 2 * int(padding) for e in extent[::-1]]  # (z, y, x)
    return counts[0], counts[1], counts[2]
