"""The default learning rates are the committed sweep's choice (``benchmarks/sweep_defaults.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monai_nets.registry import available_networks, network_class
from reconstruct.tasks import default_lr
from reconstruct.tasks.learning_rates import IMAGE_LEARNING_RATES, IMAGE_TASKS

SWEEP = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "lr_defaults_cpu.json"


@pytest.fixture(scope="module")
def sweep() -> dict:
    return json.loads(SWEEP.read_text())


def test_every_registry_model_was_swept(sweep):
    assert set(sweep["chosen"]) == set(available_networks()) == set(IMAGE_LEARNING_RATES)
    for model, choice in sweep["chosen"].items():
        tried = [r["multiplier"] for r in sweep["sweep"] if r["model"] == model]
        assert len(tried) >= 4 and not choice["at_edge"], model  # the optimum is bracketed
        assert sweep["recommended_lr"][model] == network_class(model).recommended_lr


@pytest.mark.parametrize("task", IMAGE_TASKS)
def test_image_task_defaults_equal_the_sweeps_choice(sweep, task):
    for model, choice in sweep["chosen"].items():
        assert default_lr(model, task) == pytest.approx(choice["lr"], rel=1e-12), (task, model)
