"""``benchmarks/bench_ct.py`` on a tiny case: chest 32², 12 views, 1 % noise, one INR at 3 steps, in process."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_ct.py"
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()

pytestmark = pytest.mark.skipif(not (DATA_DIR / "chest.png").exists(), reason="no shared/data/chest.png")


def _load():
    spec = importlib.util.spec_from_file_location("bench_ct_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_tiny_run_writes_every_field_and_resumes(tmp_path):
    bench = _load()
    out = tmp_path / "ct.json"
    logged: list[str] = []
    kwargs = dict(sizes=[32], views=[12], noises=["gauss1"], models=["siren"], seeds=[0], steps=3, out=out,
                  data_dir=DATA_DIR, jobs=1, command="test", log=logged.append)
    record = bench.run_benchmark(**kwargs)
    saved = json.loads(out.read_text())
    assert saved["runs"] == json.loads(json.dumps(record["runs"]))
    for field in ("benchmark", "command", "commands", "torch", "threads", "runs", "total_seconds",
                  "task_default_steps", "task_defaults", "tv_oracle_grid", "tv_search_available", "photon"):
        assert field in saved, field
    methods = {r["method"] for r in saved["runs"]}
    expected = set(bench.plan_methods(["siren"], tv_search=saved["tv_search_available"]))
    assert methods == expected and "inr:siren" in methods and "fbp_best" in methods and "tv_oracle" in methods
    for run in saved["runs"]:
        for field in bench.ROW_FIELDS:
            assert field in run, (run["method"], field)
        assert run["case"] == "chest32_v12_gauss1" and run["seed"] == 0
        assert 0.0 < run["ssim"] <= 1.0 and run["psnr"] > 5
    by = {r["method"]: r for r in saved["runs"]}
    inr = by["inr:siren"]
    assert inr["steps_override"] == 3 and inr["steps"] >= 3 and inr["kind"] == "inr" and inr["ground_truth_free"]
    assert inr["best_psnr"] is not None and inr["best_psnr"] >= inr["psnr"] - 1e-9 and inr["stop"]["rule"]
    # The oracle rows are the best of their searches, and marked as not ground-truth-free.
    assert not by["fbp_best"]["ground_truth_free"] and not by["tv_oracle"]["ground_truth_free"]
    assert by["fbp_best"]["psnr"] == max(s["psnr"] for s in by["fbp_best"]["search"]) >= by["fbp_ramp"]["psnr"]
    assert len(by["tv_oracle"]["search"]) == 9 and by["tv_oracle"]["psnr"] >= by["tv"]["psnr"] - 1e-9 or \
        1e-3 not in [s["tv_weight"] for s in by["tv_oracle"]["search"]]

    # The rendered pieces hold the command, the table rows and the headline.
    section = "\n".join(bench.results_section(saved))
    assert section.startswith(bench.SECTION_TITLE) and "`test`" in section and "| SIREN |" in section
    assert "*oracle*" in section and "best ground-truth-free classical" in section
    assert "chest32_v12_gauss1" in bench.table(saved)

    # Resume: every row is in the JSON, nothing runs again.
    again = bench.run_benchmark(**kwargs)
    assert len(again["runs"]) == len(saved["runs"]) and "skipped" in logged[-1]


def test_photon_case_and_headline():
    bench = _load()
    case = bench.make_case(32, 12, "photon1e4", 0, DATA_DIR)
    assert case["sinogram"].shape == (12, 32) and case["info"]["i0"] == 1e4
    assert case["info"]["mu"] * case["info"]["max_line_integral"] == pytest.approx(2.0)
    cells = {"tv": {"label": "TV", "kind": "classical", "ground_truth_free": True, "psnr": 30.0, "ssim": 0.9,
                    "seconds": 2.0},
             "tv_oracle": {"label": "TV oracle (*oracle*)", "kind": "classical", "ground_truth_free": False,
                           "psnr": 33.0, "ssim": 0.9, "seconds": 2.0},
             "inr:nestnet": {"label": "NestNet", "kind": "inr", "ground_truth_free": True, "psnr": 31.5,
                             "ssim": 0.92, "seconds": 60.0}}
    line = bench.case_headline(cells)
    assert "TV 30.00" in line and "+1.50 dB" in line and "30×" in line
    assert "NestNet loses to no ground-truth-free row (and to the oracle TV oracle 33.00)" in line
    # the task's default searches the TV weight: its row leads, the fixed-weight row is quoted after it
    cells["inr_tvsearch:nestnet"] = {"label": "NestNet + TV search", "kind": "inr", "ground_truth_free": True,
                                     "psnr": 32.0, "ssim": 0.93, "seconds": 200.0}
    line = bench.case_headline(cells, default_search=True)
    assert line.index("NestNet + TV search 32.00 dB, +2.00 dB") < line.index("NestNet 31.50 dB (+1.50 dB)")
    assert "NestNet 31.50 dB, +1.50" in bench.case_headline(cells, default_search=False)
