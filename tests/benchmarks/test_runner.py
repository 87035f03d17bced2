"""End-to-end test of ``benchmarks/run.py`` on the tiny protocol (synthetic data, 10 steps, narrow nets)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN_PY = ROOT / "benchmarks" / "run.py"


def _load_runner():
    spec = importlib.util.spec_from_file_location("benchmarks_run_under_test", RUN_PY)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runner():
    return _load_runner()


@pytest.fixture(scope="module")
def tiny_run(runner, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--protocol",
        "tiny",
        "--task",
        "image,denoise",
        "--models",
        "nestnet,siren",
        "--seeds",
        "1",
        "--sweep-lr",
        "--ablation",
        "subnets",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--out",
        str(out),
    ]
    status = runner.main(argv)
    return out, status


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_records_hold_the_contract(tiny_run):
    out, status = tiny_run
    assert status == 0
    for task in ("image", "denoise"):
        for model in ("nestnet", "siren"):
            rec = json.loads((out / "results" / "tiny" / task / f"{model}_seed0.json").read_text())
            assert (rec["task"], rec["model"], rec["protocol"], rec["seed"]) == (task, model, "tiny", 0)
            assert rec["params"] > 0 and rec["steps"] == 10 and rec["lr"] > 0 and rec["seconds"] > 0
            assert rec["status"] == "ok" and rec["command"].startswith("python benchmarks/run.py")
            case = rec["cases"][0]
            assert _finite(case["final"]["psnr"]) and _finite(case["final"]["ssim"])
            assert _finite(case["best"]["psnr"]) and 1 <= case["best_step"] <= 10
            # the best iterate is at least as good as the final one (it is chosen by PSNR)
            assert case["best"]["psnr"] >= case["final"]["psnr"] - 1e-6
            steps = [h["step"] for h in case["history"]]
            assert steps[-1] == 10 and steps == sorted(steps)
            assert all(_finite(h["seconds"]) for h in case["history"])


def test_classical_references_are_scored(tiny_run):
    out, _ = tiny_run
    refs = json.loads((out / "results" / "tiny" / "denoise" / "references.json").read_text())
    methods = next(iter(refs["cases"].values()))["methods"]
    assert {"noisy input", "BM3D", "non-local means"} <= set(methods)
    # a denoiser that makes the image worse than the noisy input would be a broken reference
    assert methods["BM3D"]["metrics"]["psnr"] > methods["noisy input"]["metrics"]["psnr"]


def test_lr_sweep_and_ablation(tiny_run):
    out, _ = tiny_run
    sweep = sorted(p.name for p in (out / "results" / "tiny" / "lr_sweep").glob("*.json"))
    assert sweep == [f"{m}_x{x}.json" for m in ("nestnet", "siren") for x in ("0.5", "1", "2")]
    rec = json.loads((out / "results" / "tiny" / "image" / "siren_seed0.json").read_text())
    assert rec["lr_source"] == "sweep" and rec["lr_multiplier"] in (0.5, 1.0, 2.0)
    abl = json.loads((out / "results" / "tiny" / "ablation" / "subnets" / "r1_seed0.json").read_text())
    assert abl["model_kwargs"]["num_subnets"] == 1 and abl["status"] == "ok"
    # r = 2 is the default configuration: one re-run shared by every ablation, not one per ablation
    assert not (out / "results" / "tiny" / "ablation" / "subnets" / "r2_seed0.json").exists()
    results = out / "results" / "tiny"
    default = json.loads((results / "ablation" / "default" / "default_seed0.json").read_text())
    main = json.loads((results / "image" / "nestnet_seed0.json").read_text())
    # the same configuration, data and seed give the same fit (CPU runs are deterministic)
    assert default["cases"][0]["final"]["psnr"] == pytest.approx(main["cases"][0]["final"]["psnr"], abs=1e-4)


def test_report_has_tables_with_numbers_and_plots(tiny_run):
    out, _ = tiny_run
    text = (out / "RESULTS.md").read_text()
    assert "### Image representation" in text and "### Denoising" in text
    for model in ("NestNet", "SIREN"):
        row = next(
            line
            for line in text.splitlines()
            if line.startswith(f"| {model}") or line.startswith(f"| **{model}**")
        )
        assert re.search(r"\|\s*\**-?\d+\.\d+", row), row
    assert "| *BM3D* |" in text
    assert "### Learning-rate sweep" in text and "r = 1 vs r = 2" in text
    assert (out / "plots" / "tiny_image_synthetic.png").stat().st_size > 1000


def test_resume_skips_and_report_only_rebuilds(runner, tiny_run, capsys):
    out, _ = tiny_run
    rec = out / "results" / "tiny" / "image" / "nestnet_seed0.json"
    before = rec.stat().st_mtime_ns
    (out / "RESULTS.md").unlink()
    argv = [
        "--protocol",
        "tiny",
        "--task",
        "image",
        "--models",
        "nestnet",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]
    assert runner.main(argv) == 0
    assert rec.stat().st_mtime_ns == before
    assert "exist already" in capsys.readouterr().out
    (out / "RESULTS.md").unlink()
    assert runner.main(["--report", "--out", str(out)]) == 0
    assert "### Image representation" in (out / "RESULTS.md").read_text()


def test_missing_data_folder_is_a_clear_error(runner, tmp_path, capsys):
    status = runner.main(
        [
            "--protocol",
            "quick",
            "--task",
            "image",
            "--data-dir",
            str(tmp_path / "absent"),
            "--out",
            str(tmp_path),
        ]
    )
    assert status == 2
    err = capsys.readouterr().err
    assert "not found" in err and "--data-dir" in err
    assert not (tmp_path / "results").exists()


def test_bad_arguments_are_rejected(runner):
    with pytest.raises(SystemExit):
        runner.main(["--task", "segmentation"])
    with pytest.raises(SystemExit):
        runner.main(["--ablation", "depth"])


def test_step_override_is_a_smoke_run_kept_apart(runner, tiny_run):
    out, _ = tiny_run
    real = out / "results" / "tiny" / "image" / "siren_seed0.json"
    before = real.read_text()
    argv = ["--protocol", "tiny", "--task", "image", "--models", "siren", "--seeds", "1", "--steps", "3",
            "--device", "cpu", "--out", str(out)]
    assert runner.main(argv) == 0
    smoke_path = out / "results" / "_smoke_steps3" / "tiny" / "image" / "siren_seed0.json"
    smoke = json.loads(smoke_path.read_text())
    assert smoke["steps"] == 3 and smoke["steps_override"] == 3
    assert real.read_text() == before  # the real record is neither overwritten nor reported as smoke
    assert "_smoke" not in (out / "RESULTS.md").read_text()


def test_records_measured_on_other_data_are_recomputed(runner, tiny_run):
    out, _ = tiny_run
    path = out / "results" / "tiny" / "image" / "siren_seed0.json"
    rec = json.loads(path.read_text())
    assert len(rec["cases"][0]["data_hash"]) == 16
    rec["cases"][0]["data_hash"] = "0" * 16  # as if the protocol's image had changed since
    path.write_text(json.dumps(rec))
    argv = ["--protocol", "tiny", "--task", "image", "--models", "siren", "--seeds", "1", "--device", "cpu",
            "--out", str(out), "--no-report"]
    assert runner.main(argv) == 0
    assert json.loads(path.read_text())["cases"][0]["data_hash"] != "0" * 16


def test_ablation_states_the_default_decision(tiny_run):
    out, _ = tiny_run
    text = (out / "RESULTS.md").read_text()
    section = text[text.index("r = 1 vs r = 2"):]
    assert re.search(r"Library default kept: r=2|argues for changing the library default\*\* from r=2", section)


def test_speed_section_renders_model_and_scaling_records(runner, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    models = {"command": "python benchmarks/bench_models.py", "points": 1024, "rows": [
        {"model": "siren", "median_ms": 10.0, "params": 66000},
        {"model": "nestnet", "median_ms": 15.0, "params": 99000},
        {"model": "nestnet naive", "median_ms": 60.0, "params": 99000},
    ]}
    scaling = {"command": "python benchmarks/bench_scaling.py", "steps": [
        {"points": 2**14, "median_ms": 160.0, "us_per_point": 160e3 / 2**14},
        {"points": 2**15, "median_ms": 330.0, "us_per_point": 330e3 / 2**15},
    ], "render": [{"size": 64, "seconds": 1.0, "peak_rss_growth_mb": 301.0, "output_mb": 1.0}],
        "occupancy_fit": [{"size": 32, "steps": 5, "batch_size": 65536, "seconds": 3.0,
                           "peak_rss_growth_mb": 420.0, "volume_mb": 0.03, "iou": 0.5}]}
    (results / "models_cpu.json").write_text(json.dumps(models))
    (results / "scaling_cpu.json").write_text(json.dumps(scaling))
    text = runner.report.generate(tmp_path).read_text()
    assert "| nestnet naive | 99.0 k | 60 | 6.00× |" in text
    assert "naive/fused NestNet = 4.00" in text
    assert "| 2^15 = 32,768 | 330 | 10.1 |" in text and "grows linearly" in text
    assert "| 64³ | 1.0 | 301 | 1 |" in text and "needs 300–300 MB" in text
    assert "| 32³ | 5 | 65,536 | 3 | 420 | 0 | 0.5000 |" in text


def test_forced_sweep_drops_stale_extension_records(runner, tiny_run, tmp_path):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    sweep = out / "results" / "tiny" / "lr_sweep"
    stale = json.loads((sweep / "nestnet_x2.json").read_text())
    stale["lr_multiplier"] = 64.0  # an extension from an earlier run, far outside this run's grid
    (sweep / "nestnet_x64.json").write_text(json.dumps(stale))
    argv = ["--protocol", "tiny", "--task", "image", "--models", "nestnet", "--seeds", "1", "--sweep-lr",
            "--force", "--device", "cpu", "--threads", "1", "--out", str(out), "--no-report"]
    assert runner.main(argv) == 0
    assert not (sweep / "nestnet_x64.json").exists()
    assert (sweep / "nestnet_x1.json").exists()


def _ablation_on_a_copy(runner, tiny_run, tmp_path, task: str, models: str, ablation: str) -> Path:
    """Run one ablation on a copy of the module's tiny run (its main records are reused); returns the copy."""
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    argv = ["--protocol", "tiny", "--task", task, "--models", models, "--seeds", "1",
            "--ablation", ablation, "--device", "cpu", "--threads", "1", "--out", str(out)]
    assert runner.main(argv) == 0
    return out


def test_prior_ablation_runs_nestnet_at_image_settings(runner, tiny_run, tmp_path):
    out = _ablation_on_a_copy(runner, tiny_run, tmp_path, "denoise", "nestnet,siren", "prior")
    folder = out / "results" / "tiny" / "ablation" / "prior"
    rec = json.loads(next(folder.glob("denoise*_seed0.json")).read_text())
    assert rec["task"] == "denoise" and rec["status"] == "ok"
    assert rec["cases"][0]["effective_model_kwargs"]["num_frequencies"] == 32
    main = json.loads((out / "results" / "tiny" / "denoise" / "nestnet_seed0.json").read_text())
    assert main["cases"][0]["effective_model_kwargs"]["num_frequencies"] < 32  # the task default
    text = (out / "RESULTS.md").read_text()
    assert "Task-specific prior" in text and re.search(r"Like for like, NestNet ranks \d of \d INRs", text)


def test_height_time_gives_each_height_the_default_nestnet_wall_clock(runner, tiny_run, tmp_path):
    out = _ablation_on_a_copy(runner, tiny_run, tmp_path, "image", "nestnet", "height_time")
    main = json.loads((out / "results" / "tiny" / "image" / "nestnet_seed0.json").read_text())
    folder = out / "results" / "tiny" / "ablation" / "height_time"
    assert not list(folder.glob("height2*"))  # height 2 is the default: the main table's run is its row
    for height in (3, 4):
        rec = json.loads(next(folder.glob(f"height{height}_seed0.json")).read_text())
        assert rec["model_kwargs"]["height"] == height and rec["status"] == "ok"
        assert rec["time_budget_s"] == pytest.approx(main["seconds"])
        [case] = rec["cases"]
        probe = case["calibration"]
        assert probe["s_per_step"] > 0 and probe["budget_s"] == rec["time_budget_s"]
        # the step count was sized from the probe (>= 10, <= 4x the protocol's), the budget capped the run
        assert case["steps_requested"] == probe["steps"] and 10 <= probe["steps"] <= 40
        assert case["steps"] <= probe["steps"]
    text = (out / "RESULTS.md").read_text()
    section = text.split("#### Height 2 vs 3 vs 4 at equal wall-clock")[1].split("Produced by")[0]
    assert re.search(r"\| height=2 \|", section) and re.search(r"\| height=4 \|", section)
    assert "Budget:" in section and "ms per step on a short probe fit" in section


def test_a_task_the_protocol_does_not_define_is_one_clear_error(runner, capsys):
    with pytest.raises(SystemExit):
        runner.main(["--protocol", "cpu256", "--task", "ct"])
    err = capsys.readouterr().err
    assert "protocol cpu256 has no ct task" in err and "image" in err
    assert runner.parse_args(["--protocol", "cpu256"]).tasks == ["image"]  # "all": the protocol's tasks


def test_cpu256_signal_has_more_values_than_any_network_has_parameters():
    from benchmarks.cases import build_cases
    from benchmarks.common import DEFAULT_DATA_DIR, MODEL_NAMES, model_kwargs_for
    from monai_nets import get_network

    if not DEFAULT_DATA_DIR.is_dir():
        pytest.skip(f"benchmark data folder {DEFAULT_DATA_DIR} not here")
    [case] = build_cases("cpu256", "image", DEFAULT_DATA_DIR)
    assert case.reference.shape == (256, 256, 3) and case.reference.dtype.name == "float32"
    assert "resized from 512x512" in case.description
    for model in MODEL_NAMES:
        net = get_network(model, 2, 3, **model_kwargs_for("cpu256", model))
        count = net.num_real_parameters() if hasattr(net, "num_real_parameters") else \
            sum(p.numel() for p in net.parameters())
        # FFN's 256 Fourier features make its first layer 512 wide: it has about as many parameters as
        # the signal has values (the protocol note says so); every other network has at most 70 % as many.
        assert count < (1.01 if model == "ffn" else 0.75) * case.reference.size, model
