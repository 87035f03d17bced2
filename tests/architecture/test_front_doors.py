"""No drift: every task description reaches every front door with the same names, defaults and choices.

The front doors are the task functions themselves, ``nestnet <task>``, ``nestnet batch <task>``, the MONAI
dictionary transforms and the benchmarks (the napari panels: ``tests/napari_nestnet/test_panel_fields.py``,
which needs a viewer).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect

import pytest

from reconstruct.tasks import FIT_PARAMS, SPECS, TASKS, Param
from reconstruct.tasks.runner import task_signature


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(f"{parser.prog} has no sub-command {name!r}")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.option_strings}


def _check_option(action: argparse.Action, param: Param, where: str) -> None:
    assert param.cli_flag in action.option_strings, f"{where}: {param.name} is not {param.cli_flag}"
    default = param.default
    text = "none" if default is None else (",".join(f"{v:g}" for v in default) if isinstance(default, tuple)
                                           else f"{default:g}" if isinstance(default, float) else str(default))
    assert f"(default: {text})" in action.help, f"{where}: {param.name} help {action.help!r} hides the default"
    assert action.default is argparse.SUPPRESS, f"{where}: {param.name} must leave the default to the task"
    if param.choices is not None:
        listed = action.choices if action.choices is not None else action.metavar
        for choice in param.choices:
            assert str(choice) in listed, f"{where}: {param.name} does not offer {choice!r}"


@pytest.mark.parametrize("name", list(SPECS))
def test_task_function_signature_is_its_spec(name):
    spec, fn = SPECS[name], TASKS[name]
    assert fn.spec is spec
    signature = inspect.signature(fn)
    assert signature == task_signature(spec)
    for param in (*spec.params, *FIT_PARAMS):
        assert signature.parameters[param.name].default == param.default, f"{name}.{param.name}"
    # every parameter's default passes its own validation
    assert spec.check_params({}) == {p.name: p.check(p.default) for p in spec.params}


@pytest.mark.parametrize("name", list(SPECS))
def test_command_line_options_are_the_spec(name):
    from reconstruct.app.cli import build_parser

    spec = SPECS[name]
    options = _options(_subparser(build_parser(), spec.command))
    for param in (*spec.params_for("cli"), *(p for p in FIT_PARAMS if "cli" in p.doors)):
        assert param.name in options, f"nestnet {spec.command} lacks {param.cli_flag}"
        _check_option(options[param.name], param, f"nestnet {spec.command}")


@pytest.mark.parametrize("name", list(SPECS))
def test_batch_options_are_the_spec(name):
    from reconstruct.app.cli import build_parser

    spec = SPECS[name]
    batch = _subparser(_subparser(build_parser(), "batch"), spec.command)
    options = _options(batch)
    for param in (*spec.params_for("batch"), *(p for p in FIT_PARAMS if "batch" in p.doors)):
        assert param.name in options, f"nestnet batch {spec.command} lacks {param.cli_flag}"
        _check_option(options[param.name], param, f"nestnet batch {spec.command}")
    others = {n for n in SPECS if n != name}
    foreign = {p.name for n in others for p in SPECS[n].params_for("batch")} - {p.name for p in spec.params}
    assert not foreign & set(options), f"nestnet batch {spec.command} offers other tasks' options"


def test_the_batch_help_states_the_task_defaults(capsys):
    from reconstruct.app.cli import main

    assert main(["batch", "ct", "--help"]) == 0
    out = capsys.readouterr().out
    assert "(default: 0.001)" in out and "--data-filter" in out and "--circle" in out


@pytest.mark.parametrize("name", list(SPECS))
def test_monai_transform_takes_the_spec(name):
    from reconstruct.transforms import TRANSFORMS

    spec = SPECS[name]
    cls = TRANSFORMS[name]
    accepted = set(cls.accepted_params())
    assert {p.name for p in spec.params_for("monai")} <= accepted
    with pytest.raises(TypeError, match="no_such_option"):
        cls(keys="image", no_such_option=1)


def test_benchmark_tasks_are_the_specs():
    from benchmarks.cases import build_cases
    from benchmarks.common import TASK_FUNCTIONS, TASK_METRICS

    assert sorted(TASK_FUNCTIONS.values()) == sorted(SPECS)
    for bench_name, name in TASK_FUNCTIONS.items():
        spec = SPECS[name]
        assert TASK_METRICS[bench_name] == spec.metrics
        names = set(inspect.signature(TASKS[name]).parameters)
        for case in build_cases("tiny", bench_name):
            assert set(case.kwargs) <= names, f"benchmark {bench_name} case {case.name}: {set(case.kwargs) - names}"
            spec.check_params({k: v for k, v in case.kwargs.items() if k in {p.name for p in spec.params}})


def test_a_new_parameter_reaches_the_command_line_with_one_edit(monkeypatch):
    """Adding a Param to a spec is the only edit a new option needs (the parser is generated)."""
    from reconstruct.app import cli

    extra = Param("new_knob", float, 0.25, "a parameter added in one place", low=0.0)
    spec = dataclasses.replace(SPECS["denoise"], params=(*SPECS["denoise"].params, extra))
    monkeypatch.setitem(SPECS, "denoise", spec)
    options = _options(_subparser(cli.build_parser(), "denoise"))
    _check_option(options["new_knob"], extra, "nestnet denoise")
    args = _subparser(cli.build_parser(), "denoise").parse_args(["x.png", "--new-knob", "0.5"])
    assert args.new_knob == 0.5
    with pytest.raises(SystemExit):
        _subparser(cli.build_parser(), "denoise").parse_args(["x.png", "--new-knob", "-1"])
