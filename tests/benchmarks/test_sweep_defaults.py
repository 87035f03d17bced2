"""``benchmarks/sweep_defaults.py`` end to end on tiny sweeps: every multiple run, the best kept, edges extended."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks import sweep_defaults


@pytest.mark.parametrize("learnt", [True, False], ids=["learnt", "not-learnt"])
@pytest.mark.parametrize(("task", "extra"), [("pinn", []), ("occupancy", ["--size", "12"])])
def test_tiny_sweep_keeps_the_best_multiple_and_brackets_it(tmp_path, monkeypatch, task, extra, learnt):
    metric, higher, steps, size, _ = sweep_defaults.TASKS[task]
    # two steps learn nothing at the real levels: a level every run passes, or none does, tests each branch
    level = (-1.0 if higher else 1e9) if learnt else (1e9 if higher else -1.0)
    monkeypatch.setitem(sweep_defaults.TASKS, task, (metric, higher, steps, size, level))
    out = tmp_path / f"{task}.json"
    argv = ["--task", task, "--steps", "2", "--models", "gauss", "--jobs", "1", "--out", str(out), *extra]
    assert sweep_defaults.main(argv) == 0
    record = json.loads(out.read_text())
    assert (record["task"], record["steps"], record["metric"], record["higher_is_better"]) == (task, 2, metric, higher)
    assert record["command"].endswith(" ".join(argv)) and "sweep_defaults.py" in record["command"]
    rows = record["sweep"]
    multiples = sorted(r["multiplier"] for r in rows)
    assert set(sweep_defaults.MULTIPLIERS) <= set(multiples)
    grid = len(sweep_defaults.MULTIPLIERS)
    assert grid <= len(rows) <= grid + sweep_defaults.MAX_EXTENSIONS
    for r in rows:
        assert r["lr"] == pytest.approx(r["multiplier"] * record["recommended_lr"]["gauss"])
        if task == "pinn":  # one error per development speed; the run's metric is their geometric mean
            errors = r["rel_l2_per_beta"]
            assert set(errors) == {f"{b:g}" for b in sweep_defaults.PINN_DEV_BETAS}
            assert r["rel_l2"] == pytest.approx(math.prod(errors.values()) ** (1 / len(errors)))
    best = (max if higher else min)(rows, key=lambda r: r[metric])
    # the grid grew outwards only while its best was at an edge: it stopped bracketed or after the last extension
    if len(rows) < grid + sweep_defaults.MAX_EXTENSIONS:
        assert best["multiplier"] not in (multiples[0], multiples[-1])
    chosen = record["chosen"]["gauss"]
    assert chosen["learnt"] is learnt
    if learnt:
        assert chosen["lr"] == best["lr"] and chosen[f"dev_{metric}"] == best[metric]
        assert chosen["at_edge"] == (best["multiplier"] in (multiples[0], multiples[-1]))
    else:  # nothing learnt: the recommended rate stays, never "at an edge"
        assert chosen["multiplier"] == 1.0 and chosen["lr"] == record["recommended_lr"]["gauss"]
        assert not chosen["at_edge"]


def test_rechoose_applies_the_rule_to_a_records_runs_again(tmp_path, capsys):
    from benchmarks.common import write_json

    rows = [{"task": "occupancy", "model": "gauss", "multiplier": k, "lr": 0.005 * k, "iou": iou}
            for k, iou in zip(sweep_defaults.MULTIPLIERS, (0.2, 0.6, 0.5, 0.1))]
    rows += [{"task": "occupancy", "model": "ffn", "multiplier": k, "lr": 0.001 * k, "iou": 0.0}
             for k in sweep_defaults.MULTIPLIERS]
    path = tmp_path / "record.json"
    write_json(path, {"command": "first", "task": "occupancy", "sweep": rows, "chosen": {}})
    assert sweep_defaults.main(["--rechoose", str(path)]) == 0
    record = json.loads(path.read_text())
    assert record["sweep"] == rows and record["commands"][0] == "first"
    assert record["commands"][1].endswith(f"--rechoose {path}")
    assert record["chosen"]["gauss"] == {"multiplier": 1.0, "lr": 0.005, "dev_iou": 0.6, "at_edge": False,
                                         "learnt": True}
    assert record["chosen"]["ffn"]["learnt"] is False and record["chosen"]["ffn"]["lr"] == 0.001
    assert "ffn: dev iou is worse than 0.3" in capsys.readouterr().err


def test_occupancy_development_volume_is_generated_and_fixed():
    first, again = sweep_defaults.blob_volume(16), sweep_defaults.blob_volume(16)
    assert first.shape == (16, 16, 16) and first.dtype == bool and (first == again).all()
    assert 0.2 < first.mean() < 0.4


def test_budget_check_reruns_recommended_and_chosen_at_other_steps(tmp_path):
    out = tmp_path / "occupancy.json"
    assert sweep_defaults.main(["--task", "occupancy", "--size", "12", "--steps", "2", "--models", "siren",
                                "--jobs", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    record["chosen"]["siren"]["multiplier"] = 3.0  # whatever two steps chose: a choice away from x1
    out.write_text(json.dumps(record))
    argv = ["--budget-check", str(out), "--steps", "3", "--jobs", "1"]
    assert sweep_defaults.main(argv) == 0
    checked = json.loads(out.read_text())
    assert checked["sweep"] == record["sweep"] and checked["commands"][-1].endswith(" ".join(argv))
    runs = checked["budget_checks"]  # at x1 and at the choice
    assert [(r["model"], r["multiplier"], r["steps"], r["size"]) for r in runs] == [("siren", 1.0, 3, 12),
                                                                                   ("siren", 3.0, 3, 12)]
    assert runs[1]["lr"] == pytest.approx(3 * record["recommended_lr"]["siren"]) and 0 <= runs[1]["iou"] <= 1


def test_section_bolds_each_choice_and_marks_what_was_not_learnt():
    rows = [{"task": "occupancy", "model": "gauss", "multiplier": k, "lr": 0.005 * k, "iou": iou}
            for k, iou in zip(sweep_defaults.MULTIPLIERS, (0.2, 0.6, 0.5, 0.1))]
    rows += [{"task": "occupancy", "model": "ffn", "multiplier": k, "lr": 0.001 * k, "iou": 0.0}
             for k in sweep_defaults.MULTIPLIERS]
    record = {"command": "sweep", "task": "occupancy", "metric": "iou", "dev_case": "blobs", "steps": 60,
              "recommended_lr": {"gauss": 0.005, "ffn": 0.001}, "sweep": rows,
              "chosen": sweep_defaults.choose(rows, "occupancy"),
              "budget_checks": [{**rows[1], "steps": 500, "iou": 0.9}, {**rows[2], "steps": 500, "iou": 0.95}]}
    text = "\n".join(sweep_defaults.results_section([record]))
    assert text.startswith(sweep_defaults.SECTION_TITLE) and "blobs, 60 steps, final IoU at 0.5" in text
    assert "| gauss | 0.005 | 0.2 | **0.6** | 0.5 | 0.1 | 0.005 |" in text
    assert "| ffn | 0.001 | 0 | 0 | 0 | 0 | 0.001 (*not learnt*) |" in text
    assert "At 500 steps" in text and "gauss 0.9 → 0.95" in text and "`sweep`" in text
