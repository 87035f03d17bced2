"""The two floors: the science (networks, grids, operators, the fit loop, tasks, metrics, noise) never
reaches the application (files and SimpleITK, checkpoints, meshes, records, runtime, CLI, batch/Dask) nor
napari, magicgui or dask — checked by importing it in a fresh interpreter and by reading its imports."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

#: The public science API: importing all of it must load none of FORBIDDEN.
SCIENCE_MODULES = (
    "monai_nets", "reconstruct", "reconstruct.device", "reconstruct.grid", "reconstruct.radon",
    "reconstruct.operators", "reconstruct.fit", "reconstruct.metrics", "reconstruct.noise",
    "reconstruct.occupancy", "reconstruct.pinn", "reconstruct.tasks", "reconstruct.tasks.spec",
    "reconstruct.tasks.runner",
)
FORBIDDEN = ("reconstruct.app", "reconstruct.io", "reconstruct.cli", "reconstruct.batch", "reconstruct.transforms",
             "napari", "napari_nestnet", "magicgui", "dask", "distributed", "SimpleITK")
SCIENCE_FILES = [p for p in sorted((ROOT / "reconstruct").rglob("*.py"))
                 if "app" not in p.relative_to(ROOT / "reconstruct").parts
                 and p.name not in ("io.py", "cli.py", "batch.py", "transforms.py")]


def test_importing_the_science_loads_no_application_module():
    code = (
        "import json, sys\n"
        f"for name in {SCIENCE_MODULES!r}:\n"
        "    __import__(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r} "
        f"or any(m == f or m.startswith(f + '.') for f in {FORBIDDEN!r}))))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    loaded = json.loads(proc.stdout.strip().splitlines()[-1])
    assert loaded == [], f"the science floor loaded {loaded}"


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(level, module)`` of every import statement in ``path`` (level > 0: relative)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(0, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            out.append((node.level, node.module or ""))
    return out


def _absolute(path: Path, level: int, module: str) -> str:
    if level == 0:
        return module
    package = list(path.relative_to(ROOT).with_suffix("").parts[:-1])
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


def test_no_science_module_imports_the_application_even_lazily():
    offenders = []
    for path in SCIENCE_FILES:
        for level, module in _imports(path):
            name = _absolute(path, level, module)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not offenders, "\n".join(offenders)


_FILE_MODULES = ("tempfile", "shutil", "pathlib", "PIL", "imageio", "tifffile", "nibabel")
_FILE_CALLS = ("open", "os.replace", "os.rename", "np.save", "np.load", "numpy.save", "numpy.load", "trimesh.load",
               "trimesh.load_mesh", "savefig", "torch.save", "torch.load")


def _call_name(node: ast.Call) -> str:
    parts = []
    target = node.func
    while isinstance(target, ast.Attribute):
        parts.append(target.attr)
        target = target.value
    if isinstance(target, ast.Name):
        parts.append(target.id)
    return ".".join(reversed(parts))


def test_the_science_reads_and_writes_no_files():
    """Mesh, image and checkpoint files are the application's: the science takes arrays and meshes."""
    offenders = []
    for path in SCIENCE_FILES:
        tree = ast.parse(path.read_text(), str(path))
        for level, module in _imports(path):
            if level == 0 and module.split(".")[0] in _FILE_MODULES:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                name = _call_name(node)
                if name in _FILE_CALLS or name.endswith(".savefig"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} calls {name}")
    assert not offenders, "\n".join(offenders)


def test_the_networks_import_only_torch_and_monai():
    allowed = {"torch", "monai", "numpy", "math", "typing", "collections", "dataclasses", "functools", "os",
               "warnings", "__future__", "monai_nets", "inspect", "contextlib", "threading", "itertools", "abc",
               "enum", "collections.abc"}
    for path in sorted((ROOT / "monai_nets").glob("*.py")):
        for level, module in _imports(path):
            if level == 0:
                assert module.split(".")[0] in allowed, f"{path.name} imports {module}"


def test_no_import_cycles_between_task_modules_and_no_import_time_mutation():
    """Each task module imports cleanly on its own, first, in a fresh interpreter."""
    for name in ("reconstruct.tasks.ct", "reconstruct.tasks.image", "reconstruct.tasks.occupancy",
                 "reconstruct.tasks.pinn", "reconstruct.occupancy", "reconstruct.pinn"):
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], cwd=ROOT, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, f"{name}: {proc.stderr.strip().splitlines()[-1:]}"


def test_modules_stay_at_their_seams():
    """No module over about 500 lines (the design card's rule)."""
    long = []
    for folder in ("monai_nets", "reconstruct", "napari_nestnet", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > 550:  # "about 500"
                long.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not long, "\n".join(long)


def test_importing_never_raises_on_a_bad_environment_variable():
    """A bad ``NESTNET_FUSED_BACKEND`` is reported at first use (and 'auto' used), never at import time."""
    import os

    code = "import monai_nets, reconstruct.tasks; print(monai_nets.get_fused_backend())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "NESTNET_FUSED_BACKEND": "bogus"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "auto" and "NESTNET_FUSED_BACKEND='bogus'" in proc.stderr


def test_no_defensive_imports_of_the_project_s_own_modules():
    offenders = []
    for folder in ("monai_nets", "reconstruct", "napari_nestnet", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Try):
                    continue
                for stmt in node.body:
                    if isinstance(stmt, ast.ImportFrom) and (stmt.level > 0 or (stmt.module or "").split(".")[0]
                                                            in ("reconstruct", "monai_nets", "napari_nestnet")):
                        offenders.append(f"{path.relative_to(ROOT)}:{stmt.lineno}")
    assert not offenders, "guarded imports of our own modules: " + ", ".join(offenders)
