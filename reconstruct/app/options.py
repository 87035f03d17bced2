"""Command-line options generated from the task descriptions (used by ``nestnet <task>`` and ``nestnet batch``).

Each :class:`~reconstruct.tasks.spec.Param` becomes one ``argparse`` option: its flag, a type that parses
and validates with the parameter's own rules, its choices in the metavar and its help with the default.
An option that is not given is absent from the parsed namespace (``argparse.SUPPRESS``), so the task's
own default applies and an explicit ``none`` can still ask for ``None``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..tasks.spec import Param

__all__ = ["add_param_options", "param_help", "given_params"]


def _default_text(param: Param) -> str:
    if param.default is None:
        return "none"
    if param.type is tuple:
        return ",".join(f"{v:g}" for v in param.default)
    return f"{param.default:g}" if isinstance(param.default, float) else str(param.default)


def param_help(param: Param) -> str:
    """The option's help: the parameter's help, units and default (``%`` escaped for argparse)."""
    units = f" [{param.units}]" if param.units else ""
    return f"{param.help}{units} (default: {_default_text(param)})".replace("%", "%%")


def _converter(param: Param) -> Any:
    def convert(text: str) -> Any:
        if param.type is dict:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
            if not isinstance(value, dict):
                raise argparse.ArgumentTypeError(
                    f"must be a JSON object like '{{\"hidden_channels\": [128, 128]}}': {text!r}")
            return value
        try:
            return param.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = param.name  # argparse names the type in its own messages
    return convert


def add_param_options(parser: argparse.ArgumentParser | Any, params: Iterable[Param]) -> None:
    """Add one option per parameter to ``parser`` (or an argument group); ``dest`` is the parameter's name."""
    for param in params:
        kwargs: dict[str, Any] = {"dest": param.name, "default": argparse.SUPPRESS, "help": param_help(param)}
        if param.type is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif param.type is str and param.choices is not None and not param.optional:
            kwargs["choices"] = param.choices  # argparse's own "invalid choice" message and help list
        else:
            kwargs["type"] = _converter(param)
            if param.choices is not None:
                names = [str(c) for c in param.choices] + (["none"] if param.optional else [])
                kwargs["metavar"] = "{" + ",".join(names) + "}"
            elif param.type is dict:
                kwargs["metavar"] = "JSON"
            elif param.type is tuple:
                kwargs["metavar"] = "A,B,..."
            else:
                kwargs["metavar"] = param.name.upper()
        parser.add_argument(param.cli_flag, **kwargs)


def given_params(args: argparse.Namespace | Mapping[str, Any], params: Iterable[Param]) -> dict[str, Any]:
    """The parameters given on the command line (absent ones are left to the task's defaults)."""
    values = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    return {p.name: values[p.name] for p in params if p.name in values}
