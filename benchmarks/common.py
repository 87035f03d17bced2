"""Benchmark protocols and constants shared by ``benchmarks/run.py`` and its report.

A *protocol* fixes, for every task, the data (one or more *cases*), the image/volume sizes, the step
budget and the network width:

* ``tiny``  — synthetic data, a few steps, narrow networks: the end-to-end test (seconds, no data).
* ``quick`` — the paper's tasks at CPU size (48-72 px images, 64³ occupancy, PINN β ∈ {5, 30}).
* ``paper`` — the field's protocols (WIRE / FINER harnesses) on ``../shared/data``: GPU-sized.

The cases themselves are built in :mod:`benchmarks.cases`, the classical references scored on them in
:mod:`benchmarks.references`; their public names are also available from here (loaded on first use, so
that those modules can import this one).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reconstruct.tasks import SPECS

if TYPE_CHECKING:
    from benchmarks.cases import Case, build_cases, case_hash, dev_case
    from benchmarks.references import classical_references

__all__ = [
    "ROOT",
    "DEFAULT_DATA_DIR",
    "TASK_NAMES",
    "TASK_FUNCTIONS",
    "TASK_TITLES",
    "TASK_METRICS",
    "MODEL_NAMES",
    "PROTOCOLS",
    "protocol_tasks",
    "Case",
    "DataMissingError",
    "build_cases",
    "dev_case",
    "model_kwargs_for",
    "classical_references",
    "case_hash",
    "read_json",
    "write_json",
    "higher_is_better",
    "is_smoke",
    "nestnet_defaults",
    "missing_data_folder_message",
]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()

TASK_NAMES = ("image", "denoise", "sisr", "misr", "ct", "ct3d", "occupancy", "pinn")
#: benchmark task name -> name of the function in ``reconstruct.tasks``.
TASK_FUNCTIONS = {
    "image": "fit_image",
    "denoise": "denoise",
    "sisr": "super_resolve",
    "misr": "super_resolve_multi",
    "ct": "ct_reconstruct",
    "ct3d": "ct_reconstruct_3d",
    "occupancy": "fit_occupancy",
    "pinn": "solve_convection",
}
TASK_TITLES = {
    "image": "Image representation",
    "denoise": "Denoising (photon noise)",
    "sisr": "Single-image super-resolution ×4",
    "misr": "Multi-image super-resolution ×4",
    "ct": "CT reconstruction (parallel beam)",
    "ct3d": "3-D CT reconstruction (parallel stack, cone beam)",
    "occupancy": "Occupancy volume representation",
    "pinn": "PINN: 1-D convection u_t + β u_x = 0",
}
#: Metrics reported per task (the task descriptions'); the first decides the best iterate and the ranking.
TASK_METRICS = {name: SPECS[function].metrics for name, function in TASK_FUNCTIONS.items()}
MODEL_NAMES = ("nestnet", "siren", "wire", "gauss", "mfn", "ffn", "finer")


def higher_is_better(metric: str) -> bool:
    """Direction of a metric (relative L2 error is the only lower-is-better one here)."""
    return metric not in ("rel_l2", "loss")


def at_default_rate(run: dict, task: str) -> bool:
    """Whether ``run`` used ``task``'s default learning rate for its model (runs that record none count as such)."""
    from reconstruct.tasks import default_lr

    return run.get("lr") is None or math.isclose(run["lr"], default_lr(run["model"], task), rel_tol=1e-9)


def runs_off_the_default_rate(runs: list[dict], task: str) -> dict[str, tuple[float, float]]:
    """model -> (the rate its runs used, today's default) for the models of ``runs`` fitted at another rate
    than ``task``'s default (the defaults changed since: ``benchmarks/sweep_defaults.py``)."""
    from reconstruct.tasks import default_lr

    return {r["model"]: (r["lr"], default_lr(r["model"], task)) for r in runs if not at_default_rate(r, task)}


def add_replacing(record: dict, run: dict, key: Callable[[dict], Any]) -> None:
    """Append ``run`` to ``record["runs"]``; runs with its ``key`` move to ``record["superseded_runs"]``."""
    replaced = [r for r in record["runs"] if key(r) == key(run)]
    if replaced:
        record.setdefault("superseded_runs", []).extend(replaced)
        record["runs"] = [r for r in record["runs"] if key(r) != key(run)]
    record["runs"].append(run)


class DataMissingError(FileNotFoundError):
    """The benchmark data folder (or a file in it) is absent."""


def missing_data_folder_message(data_dir: Any) -> str:
    """What to say when the benchmark data folder ``data_dir`` does not exist."""
    return (
        f"benchmark data folder {data_dir} not found; pass --data-dir (the folder with cameraman.tif, "
        "kodak.png, parrot.png, chest.png, div2k/, meshes/) or use --protocol tiny"
    )


# ----------------------------------------------------------------------------------------- protocols
# Sizes are (H, W) in pixels after resizing the source image; ``steps`` are optimisation steps.
# Why the quick sizes are small: the whole quick protocol (7 tasks x 7 models x 3 seeds, classical
# references, the LR sweep and the ablations) must regenerate on 2 CPU cores in about 40 minutes.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "tiny": {
        "description": "synthetic 16-32 px signals, 10 steps, 2 x 32 networks: the end-to-end test",
        "model_kwargs": {
            "all": {"hidden_channels": (32, 32)},
            "nestnet": {"num_frequencies": 8},
            "ffn": {"num_features": 16},
        },
        "lr_multipliers": (0.5, 1.0, 2.0),
        "ablation_seeds": 2,
        "image": {"steps": 10},
        "denoise": {"steps": 10, "tau": 30.0, "readout": 2.0},
        "sisr": {"steps": 10, "scale": 4},
        "misr": {"steps": 10, "scale": 4, "frames": 4, "shift_max": 2.0, "rotation_max": math.pi / 10},
        "ct": {"steps": 10, "size": 32, "angles": 20},
        "ct3d": {"steps": 10, "size": 12, "angles": 12, "noise": 0.01},
        "occupancy": {"steps": 10, "size": 16, "batch_size": 1024},
        "pinn": {"steps": 10, "betas": (5.0,), "nx": 16, "nt": 16},
    },
    "quick": {
        "description": (
            "the paper's tasks at CPU size: 2 x 256 networks, 48 x 72 to 64 x 64 images, 64³ occupancy, "
            "200 steps"
        ),
        "model_kwargs": {},
        "lr_multipliers": (1 / 3, 1.0, 3.0),
        # extend the grid by up to two more x3 steps where the best lies at its edge
        "lr_extend": 2,
        "ablation_seeds": 3,  # >= 3 seeds, as the main tables
        "image": {"steps": 200, "size": (64, 64)},
        "dev": {"steps": 200, "size": (64, 64)},
        "denoise": {"steps": 200, "size": (48, 72), "tau": 30.0, "readout": 2.0},
        "sisr": {"steps": 200, "size": (48, 72), "scale": 4},
        # Shifts scaled with the image (WIRE: ±20 px on 768 px wide kodak).
        "misr": {
            "steps": 200,
            "size": (48, 72),
            "scale": 4,
            "frames": 4,
            "shift_max": 20.0 * 72 / 768,
            "rotation_max": math.pi / 10,
        },
        # 25 views on 64² undersample as much as the paper's 100 views on 256².
        "ct": {"steps": 200, "size": 64, "angles": 25},
        "ct3d": {"steps": 200, "size": 24, "angles": 30, "noise": 0.01},
        # 32³ saturates (IoU 1.000 for every model): 64³ is the smallest grid that separates them.
        "occupancy": {"steps": 200, "size": 64, "batch_size": 8192, "meshes": ("spot.obj",)},
        "pinn": {"steps": 200, "betas": (5.0, 30.0)},
    },
    # The quick protocol saturates (every network has more parameters than a 64² image has values):
    # here the signal has twice NestNet 2 x 256's parameters (only FFN, 198 k, has as many), so the
    # table measures representation; one crop, 300 steps: every model in about 30 minutes of one core
    # (two seeds with --jobs 2 on two cores).
    "cpu256": {
        "description": (
            "representation at CPU size: 2 x 256 networks (67-197 k parameters) on a 256² RGB DIV2K crop "
            "(196,608 values), 300 steps"
        ),
        "model_kwargs": {},
        "lr_multipliers": (1 / 3, 1.0, 3.0),
        "lr_extend": 2,
        "ablation_seeds": 3,
        "image": {"steps": 300, "div2k": True, "div2k_names": ("00.png",), "div2k_size": (256, 256)},
        "dev": {"steps": 300, "size": (256, 256)},
    },
    "paper": {
        "description": "the WIRE/FINER harness protocols (GPU-sized)",
        "model_kwargs": {},
        "lr_multipliers": (0.25, 0.5, 1.0, 2.0, 4.0),
        "lr_extend": 2,
        "ablation_seeds": 3,  # >= 3 seeds, as the main tables
        # FINER: 16 DIV2K 512² crops (mean PSNR); plus kodak at full size.
        "image": {"steps": 2000, "div2k": True, "kodak": True},
        "dev": {"steps": 2000, "size": (256, 256)},
        # WIRE: parrot at half size, photon noise tau = 30 plus readout noise 2.
        "denoise": {"steps": 2000, "scale_factor": 0.5, "tau": 30.0, "readout": 2.0},
        # WIRE's SISR shrinks a DIV2K image by 1/3 for memory, then x4 (area down-sampling).
        "sisr": {"steps": 2000, "scale_factor": 1 / 3, "scale": 4},
        # WIRE: kodak, 4 frames, x4, shifts up to 5 * 4 = 20 px, rotations up to pi / 10.
        "misr": {
            "steps": 2000,
            "scale_factor": 1.0,
            "scale": 4,
            "frames": 4,
            "shift_max": 20.0,
            "rotation_max": math.pi / 10,
        },
        # WIRE: chest, 100 projections over 0-180 degrees (noiseless), 5000 steps; 256² grid.
        "ct": {"steps": 5000, "size": 256, "angles": 100},
        "ct3d": {"steps": 2000, "size": 64, "angles": 60, "noise": 0.01},
        # WIRE: IoU at 0.5, 200 epochs of 200k-point batches; our meshes at 128³.
        "occupancy": {
            "epochs": 200,
            "size": 128,
            "batch_size": 200_000,
            "meshes": ("armadillo.obj", "bunny.obj", "dragon.obj", "lucy.obj", "spot.obj"),
        },
        "pinn": {"steps": None, "betas": (5.0, 20.0, 30.0, 40.0)},
    },
}


def protocol_tasks(protocol: str) -> tuple[str, ...]:
    """The tasks ``protocol`` defines (in :data:`TASK_NAMES` order); ``--task all`` runs these."""
    return tuple(t for t in TASK_NAMES if t in PROTOCOLS[protocol])


def model_kwargs_for(protocol: str, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Network constructor arguments of ``model`` under ``protocol`` (plus ``extra`` on top)."""
    table = PROTOCOLS[protocol]["model_kwargs"]
    kwargs = dict(table.get("all", {}))
    kwargs.update(table.get(model, {}))
    if extra:
        kwargs.update(extra)
    return kwargs


def nestnet_defaults() -> dict[str, Any]:
    """The keyword defaults of ``NestNet.__init__`` (the library's default configuration)."""
    import inspect

    from monai_nets import NestNet

    sig = inspect.signature(NestNet.__init__)
    return {k: v.default for k, v in sig.parameters.items() if v.default is not inspect.Parameter.empty}


def is_smoke(record: dict) -> bool:
    """A record made with ``--steps`` (a smoke run), which a real run recomputes and the report skips."""
    return bool(record.get("steps_override")) or " --steps " in f" {record.get('command', '')} "


# ---------------------------------------------------------------------------------------------- I/O
def _clean_floats(obj: Any) -> Any:
    """NaN/Inf become ``None`` so the files are strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_floats(v) for v in obj]
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as strict JSON (NaN/Inf as ``null``), atomically, through the application's writer."""
    from reconstruct.app.files import json_safe
    from reconstruct.app.files import write_json as write_record

    write_record(path, _clean_floats(json_safe(data)), indent=1)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


# Names that moved to benchmarks.cases / benchmarks.references, still importable from here.
_MOVED = {
    "Case": "benchmarks.cases",
    "build_cases": "benchmarks.cases",
    "dev_case": "benchmarks.cases",
    "case_hash": "benchmarks.cases",
    "task_config": "benchmarks.cases",
    "task_steps": "benchmarks.cases",
    "load_image": "benchmarks.cases",
    "resize": "benchmarks.cases",
    "scale_to": "benchmarks.cases",
    "center_square": "benchmarks.cases",
    "synthetic_image": "benchmarks.cases",
    "synthetic_phantom": "benchmarks.cases",
    "synthetic_volume": "benchmarks.cases",
    "misr_motion": "benchmarks.cases",
    "classical_references": "benchmarks.references",
}


def __getattr__(name: str) -> Any:
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
