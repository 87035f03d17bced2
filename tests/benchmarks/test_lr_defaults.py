"""The default learning rates are the committed sweeps' choice (``benchmarks/sweep_defaults.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.sweep_defaults import TASKS
from monai_nets.registry import available_networks, network_class
from reconstruct.tasks import default_lr
from reconstruct.tasks.learning_rates import IMAGE_TASKS, SWEPT_TASKS

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
#: task -> its sweep records, the full sweep first; a later record (more steps, fewer models, a harder case) sets the
#: defaults of the models it learnt
RECORDS = {
    **{task: ("lr_defaults_cpu.json",) for task in IMAGE_TASKS},
    "solve_convection": ("lr_defaults_pinn_cpu.json", "lr_defaults_pinn_hard_cpu.json"),
    "fit_occupancy": ("lr_defaults_occupancy_cpu.json", "lr_defaults_occupancy_300_cpu.json"),
}
ALL_RECORDS = sorted({name for names in RECORDS.values() for name in names})


def _record(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def test_every_swept_task_has_a_committed_full_sweep():
    assert set(RECORDS) == set(SWEPT_TASKS)
    for task, names in RECORDS.items():
        assert set(_record(names[0])["chosen"]) == set(available_networks()), task


@pytest.mark.parametrize("name", ALL_RECORDS)
def test_each_choice_follows_the_rule_from_the_records_runs(name):
    sweep = _record(name)
    metric, higher, _, _, learnt_level = TASKS[sweep.get("task", "image")]
    for model, choice in sweep["chosen"].items():
        rows = [r for r in sweep["sweep"] if r["model"] == model]
        assert len(rows) >= 4, model
        assert sweep["recommended_lr"][model] == network_class(model).recommended_lr
        best = (max if higher else min)(rows, key=lambda r: r[metric])
        learnt = best[metric] >= learnt_level if higher else best[metric] <= learnt_level
        assert choice["learnt"] == learnt, model
        if learnt:  # the choice is the best run's, and the grid brackets it
            assert choice["lr"] == pytest.approx(best["lr"], rel=1e-12), model
            assert not choice["at_edge"], model
        else:  # nothing was learnt at any rate: the recommended rate stays
            assert choice["lr"] == pytest.approx(network_class(model).recommended_lr, rel=1e-12), model


@pytest.mark.parametrize("task", sorted(RECORDS))
def test_task_defaults_equal_the_sweeps_choice(task):
    expected = {m: network_class(m).recommended_lr for m in available_networks()}
    for name in RECORDS[task]:
        expected.update({m: c["lr"] for m, c in _record(name)["chosen"].items() if c["learnt"]})
    for model, lr in expected.items():
        assert default_lr(model, task) == pytest.approx(lr, rel=1e-12), model
