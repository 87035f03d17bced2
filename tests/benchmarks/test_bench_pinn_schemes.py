"""The PINN schemes section renders from a record: table, computed goal verdicts, the schemes' summary."""

from __future__ import annotations

import json
import sys

import pytest


def _run(model, beta, scheme, err):
    return {"model": model, "beta": beta, "scheme": scheme, "rel_l2": err, "best_rel_l2": err, "seconds": 10.0}


def test_section_states_goals_and_which_scheme_helps_from_the_numbers():
    from benchmarks.bench_pinn_schemes import SECTION_TITLE, results_section

    runs = [_run("nestnet", 30.0, "vanilla", 0.03), _run("nestnet", 30.0, "causal", 0.002),
            _run("siren", 30.0, "vanilla", 0.004), _run("siren", 30.0, "causal", 0.005)]
    record = {"command": "bench", "steps": 1000, "runs": runs, "goals": {"nestnet": {"30": 0.003}},
              "scheme_params": {"causal_eps": 0.01, "causal_slabs": 32}}
    text = "\n".join(results_section(record))
    assert text.startswith(SECTION_TITLE)
    assert "| nestnet | 30 | 0.0300 (0.0300) | **0.0020** (0.0020) |" in text
    assert "goal ≤ 0.003: **met**; best of all models siren vanilla 0.0040." in text
    assert "nestnet: causal; siren: none" in text and "No scheme helps every model" in text
    runs[1]["rel_l2"] = 0.03 * 1.01  # causal no longer helps NestNet and misses the goal tenfold
    text = "\n".join(results_section(record))
    assert "**missed by 10×**" in text and "nestnet: none" in text


def test_a_model_is_judged_only_at_the_betas_it_ran_at():
    from benchmarks.bench_pinn_schemes import results_section

    runs = [_run("nestnet", b, s, e) for b in (30.0, 40.0) for s, e in (("vanilla", 0.03), ("causal", 0.02))]
    runs += [_run("mfn", 30.0, "vanilla", 0.2), _run("mfn", 30.0, "causal", 0.1)]  # no β = 40 run
    text = "\n".join(results_section({"command": "bench", "steps": 1000, "runs": runs}))
    assert "nestnet: causal; mfn: causal" in text and "A scheme helps every model" in text


def test_a_second_run_extends_the_record_and_skips_what_it_holds(tmp_path, monkeypatch):
    # Two steps per run: the benchmark's own main() with the real task, once for NestNet, then extended
    # by SIREN into the same --out; the NestNet run is not repeated and both commands are named.
    from benchmarks import bench_pinn_schemes

    out = tmp_path / "pinn.json"
    argv = ["bench_pinn_schemes.py", "--betas", "5", "--schemes", "vanilla", "--steps", "2", "--out", str(out)]
    import reconstruct.app.runtime as runtime

    monkeypatch.setattr(runtime, "reexec_with_tcmalloc", lambda: None)  # stay in this process
    monkeypatch.setattr(sys, "argv", argv + ["--models", "nestnet"])
    bench_pinn_schemes.main()
    first = json.loads(out.read_text())
    monkeypatch.setattr(sys, "argv", argv + ["--models", "nestnet,siren"])
    bench_pinn_schemes.main()
    second = json.loads(out.read_text())
    assert [r["model"] for r in second["runs"]] == ["nestnet", "siren"]
    assert second["runs"][0] == first["runs"][0] and len(second["commands"]) == 2
    assert {r["allocator"] for r in second["runs"]} == {runtime.allocator_in_use()}  # each run names it
    assert second["total_seconds"] >= first["total_seconds"]
    text = "\n".join(bench_pinn_schemes.results_section(second))
    assert text.count("`OMP_NUM_THREADS=") == 2 and "| siren | 5 |" in text
    monkeypatch.setattr(sys, "argv", argv[:-4] + ["--steps", "3", "--out", str(out)])
    with pytest.raises(SystemExit):  # other steps: one argparse error, the record untouched
        bench_pinn_schemes.main()
    assert json.loads(out.read_text()) == second


def test_a_run_at_a_rate_no_longer_the_default_is_named_and_rerun(tmp_path, monkeypatch):
    from benchmarks import bench_pinn_schemes
    from reconstruct.tasks import default_lr

    old = [{**_run("siren", 5.0, "vanilla", 0.5), "lr": 10 * default_lr("siren", "solve_convection")}]
    text = "\n".join(bench_pinn_schemes.results_section({"command": "bench", "steps": 2, "runs": old}))
    assert "not yet re-run" in text and f"siren {old[0]['lr']:.3g} (default now" in text

    out = tmp_path / "pinn.json"
    import reconstruct.app.runtime as runtime
    from benchmarks.common import write_json

    monkeypatch.setattr(runtime, "reexec_with_tcmalloc", lambda: None)  # stay in this process
    from reconstruct.tasks import SOLVE_CONVECTION

    params = {p.name: p.default for p in SOLVE_CONVECTION.params if p.name.startswith(("causal_", "curriculum_"))}
    write_json(out, {"command": "first", "steps": 2, "seed": 0, "scheme_params": params, "runs": old})
    monkeypatch.setattr(sys, "argv", ["bench_pinn_schemes.py", "--betas", "5", "--schemes", "vanilla", "--steps",
                                      "2", "--models", "siren", "--out", str(out)])
    bench_pinn_schemes.main()
    record = json.loads(out.read_text())
    assert len(record["runs"]) == 1 and record["runs"][0]["lr"] == default_lr("siren", "solve_convection")
    # kept aside as it was, with the allocator every older run is given when the record is extended
    assert record["superseded_runs"] == [{**old[0], "allocator": None}]
    section = "\n".join(bench_pinn_schemes.results_section(record))
    assert "not yet re-run" not in section
    # the old and the new run side by side
    was, now = old[0]["rel_l2"], record["runs"][0]["rel_l2"]
    assert f"siren β = 5 {was:.4f} (vanilla, lr {old[0]['lr']:.3g}) → {now:.4f} (vanilla)" in section
