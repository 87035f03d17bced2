"""``benchmarks/bench_occupancy.py``: a tiny run (spot at 16³, 2 steps, one model, one fit in a subprocess), its
report section and the merge of side-by-side records."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_occupancy.py"
DATA_DIR = (ROOT / ".." / "shared" / "data").resolve()

#: only the tiny run voxelises a mesh; the report and merge tests build their records by hand
needs_meshes = pytest.mark.skipif(not (DATA_DIR / "meshes" / "spot.obj").exists(), reason="no shared/data/meshes")


def _load():
    spec = importlib.util.spec_from_file_location("bench_occupancy_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@needs_meshes
def test_tiny_run_writes_every_field_and_resumes(tmp_path):
    pytest.importorskip("embreex")
    bench = _load()
    out = tmp_path / "occupancy.json"
    logged: list[str] = []
    record = bench.run_benchmark(resolution=16, meshes=["spot"], models=["siren"], seeds=[0], steps=2, out=out,
                                 data_dir=DATA_DIR, threads=1, command="test", log=logged.append)
    saved = json.loads(out.read_text())
    assert saved["runs"] == json.loads(json.dumps(record["runs"]))
    for field in ("benchmark", "command", "commands", "torch", "threads", "resolution", "meshes", "runs",
                  "total_seconds", "task_default_steps", "goals"):
        assert field in saved, field
    assert saved["resolution"] == 16 and saved["meshes"]["spot"]["shape"][0] == 16
    (run,) = saved["runs"]
    for field in bench.RUN_FIELDS:
        assert field in run, field
    assert (run["mesh"], run["model"], run["seed"], run["steps"]) == ("spot", "siren", 0, 2)
    assert 0.0 <= run["iou"] <= 1.0 and run["iou"] == pytest.approx(run["iou_check"], abs=1e-6)
    assert run["ms_per_step"] > 0 and run["peak_rss_mib"] > run["rss_before_fit_mib"] > 0
    assert run["voxels"] == saved["meshes"]["spot"]["voxels"]
    assert run["renderings"] == 1  # evaluated at its last step only: that rendering is the output too

    # The rendered report pieces hold the command, the table and the headline.
    section = "\n".join(bench.results_section(saved))
    assert section.startswith(bench.SECTION_TITLE) and "`test`" in section and "| spot |" in section
    assert "NestNet" in bench.headline(saved) and "siren" in bench.table(saved)

    # Resume: the fit is in the JSON, nothing is refitted.
    again = bench.run_benchmark(resolution=16, meshes=["spot"], models=["siren"], seeds=[0], steps=2, out=out,
                                data_dir=DATA_DIR, threads=1, command="test", log=logged.append)
    assert len(again["runs"]) == 1 and "already" in logged[-1]
    # a fit at a rate that is no longer the default is fitted again, the old one kept aside
    stale = [{**run, "lr": 3 * run["lr"]}]
    out.write_text(json.dumps({**saved, "runs": stale}))
    refit = bench.run_benchmark(resolution=16, meshes=["spot"], models=["siren"], seeds=[0], steps=2, out=out,
                                data_dir=DATA_DIR, threads=1, command="test", log=logged.append)
    assert [r["lr"] for r in refit["runs"]] == [run["lr"]] and refit["superseded_runs"] == stale
    with pytest.raises(ValueError, match="resolution"):
        bench.run_benchmark(resolution=12, meshes=["spot"], models=["siren"], steps=2, out=out, data_dir=DATA_DIR)


def test_section_replaces_itself(tmp_path):
    bench = _load()
    report = tmp_path / "RESULTS.md"
    report.write_text("# Results\n\n### Other\n\ntext\n")
    bench.write_section(report, [bench.SECTION_TITLE, "", "first"])
    bench.write_section(report, [bench.SECTION_TITLE, "", "second"])
    text = report.read_text()
    assert text.count(bench.SECTION_TITLE) == 1 and "second" in text and "first" not in text and "### Other" in text


def test_report_regeneration_keeps_the_section(tmp_path):
    from benchmarks.common import write_json
    from benchmarks.report import _standalone_sections

    bench = _load()
    run = {"mesh": "spot", "model": "nestnet", "seed": 0, "steps": 2, "iou": 0.5, "ms_per_step": 10.0,
           "peak_rss_mib": 500.0, "seconds": 1.0, "train_seconds": 0.5, "eval_seconds": 0.5, "voxels": 4096}
    record = {"command": "cmd", "resolution": 16, "meshes": {"spot": {"shape": [16, 16, 9], "voxels": 4096}},
              "runs": [run]}
    write_json(tmp_path / "occupancy_16_cpu.json", record)
    lines = _standalone_sections(tmp_path)
    assert lines[0] == bench.SECTION_TITLE and any(line.startswith("| spot |") for line in lines)


def test_merge_adds_the_fits_of_records_run_side_by_side(tmp_path):
    from benchmarks.common import write_json

    bench = _load()

    def run(model, seed):
        return {"mesh": "spot", "model": model, "seed": seed, "steps": 2, "iou": 0.5 + seed / 10, "ms_per_step": 10.0,
                "peak_rss_mib": 500.0, "seconds": 1.0, "train_seconds": 0.5, "eval_seconds": 0.5, "voxels": 4096}

    meshes = {"spot": {"shape": [16, 16, 9], "voxels": 4096}}
    out, a, b = tmp_path / "main.json", tmp_path / "a.json", tmp_path / "b.json"
    write_json(out, {"resolution": 16, "commands": ["first"], "meshes": meshes, "runs": [run("nestnet", 0)],
                     "total_seconds": 10.0, "allocator": "tcmalloc"})
    write_json(a, {"resolution": 16, "commands": ["a"], "meshes": meshes, "total_seconds": 5.0,
                   "allocator": "glibc-tuned", "runs": [run("nestnet", 0), run("nestnet", 1)]})
    write_json(b, {"resolution": 16, "commands": ["b"], "meshes": meshes, "total_seconds": 7.0,
                   "allocator": "glibc-tuned",
                   "runs": [run("siren", 0)]})
    merged = bench.merge_records(out, [a, b], command="merge a b")
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(merged))
    assert sorted((r["model"], r["seed"]) for r in saved["runs"]) == [("nestnet", 0), ("nestnet", 1), ("siren", 0)]
    assert saved["commands"] == ["first", "a", "b", "merge a b"] and saved["total_seconds"] == pytest.approx(22.0)
    section = "\n".join(bench.results_section(saved))
    assert "side by side" in section and "0.5500 (0.5000–0.6000)" in section  # NestNet's two seeds
    # each fit keeps the allocator it ran under (its record's, for fits from before runs named it)
    assert [r["allocator"] for r in saved["runs"]] == ["tcmalloc", "glibc-tuned", "glibc-tuned"]
    assert "allocator glibc-tuned / tcmalloc" in section
    assert "glibc-tuned 2 fits (seeds 0,1), NestNet's peak 500 MiB" in section
    write_json(b, {"resolution": 32, "runs": [run("siren", 1)]})
    with pytest.raises(ValueError, match="resolution"):
        bench.merge_records(out, [b])


def test_fits_at_a_rate_no_longer_the_default_are_named_and_give_way(tmp_path):
    from benchmarks.common import write_json
    from reconstruct.tasks import default_lr

    bench = _load()
    default = default_lr("nestnet", "fit_occupancy")

    def run(seed, lr):
        return {"mesh": "spot", "model": "nestnet", "seed": seed, "steps": 2, "iou": 0.5, "ms_per_step": 10.0,
                "peak_rss_mib": 500.0, "seconds": 1.0, "train_seconds": 0.5, "eval_seconds": 0.5, "voxels": 4096,
                "lr": lr, "allocator": "tcmalloc"}

    meshes = {"spot": {"shape": [16, 16, 9], "voxels": 4096}}
    out, newer = tmp_path / "main.json", tmp_path / "newer.json"
    old = [run(0, default / 3), run(1, default / 3)]
    write_json(out, {"resolution": 16, "commands": ["first"], "meshes": meshes, "runs": old, "total_seconds": 1.0})
    section = "\n".join(bench.results_section(json.loads(out.read_text())))
    assert "no longer the task's default" in section
    assert f"nestnet {default / 3:.3g}, default now {default:.3g} (every fit)" in section
    # seed 0 again at today's default replaces the old fit; seed 1 stays (still named) until it is fitted again
    write_json(newer, {"resolution": 16, "commands": ["again"], "meshes": meshes,
                       "runs": [run(0, default)], "total_seconds": 1.0})
    saved = bench.merge_records(out, [newer])
    assert [(r["seed"], r["lr"]) for r in saved["runs"]] == [(1, default / 3), (0, default)]
    assert "(spot at 2 steps)" in "\n".join(bench.results_section(saved))  # seed 1 only
    assert saved["superseded_runs"] == [old[0]]
    # a source's fit at an old rate never displaces one the record holds
    write_json(newer, {"resolution": 16, "commands": ["older"], "meshes": meshes, "runs": [run(0, default / 9)],
                       "total_seconds": 1.0})
    assert bench.merge_records(out, [newer])["runs"][-1]["lr"] == default
