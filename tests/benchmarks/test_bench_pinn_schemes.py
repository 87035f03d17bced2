"""The PINN schemes section renders from a record: table, computed goal verdicts, the schemes' summary."""

from __future__ import annotations


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
