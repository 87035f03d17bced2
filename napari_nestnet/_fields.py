"""Panel fields generated from the task descriptions (:class:`reconstruct.tasks.spec.Param`).

Every task parameter a panel shows, and every common fit setting, is a magicgui widget made here from
its ``Param``: the label from the name, the value from the default, bounds from ``low``/``high``
(``gui_high`` where ``high`` is unbounded), choices from ``choices`` and the tooltip from ``help`` (and
``units``). The panels read the values back by parameter name (:meth:`ParamFields.values`), checked by
``Param.check``, so a parameter added to a spec appears in its panel without a panel edit; the other
way round, :meth:`ParamFields.fill` sets fields from parameter values (a layer's metadata), checked the
same way, and skips the values a field refuses.

How ``None`` is given for an optional parameter:

* a number whose valid values are all above 0 (``low > 0``, or ``low == 0`` excluded): 0 means None
  (a float field then shows what None means, the help's "(None: …)", e.g. "no limit", instead of 0);
* a string with choices: the extra choice ``"none"``;
* anything else (tuples, dicts, other optional numbers, free text): a text field, empty (or ``none``)
  means None.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, FloatSpinBox, LineEdit, SpinBox
from magicgui.widgets.bases import ValueWidget

__all__ = [
    "ParamFields",
    "param_widget",
    "read_param",
    "write_param",
    "field_label",
    "field_tooltip",
    "zero_means_none",
    "NONE_CHOICE",
    "parse_numbers",
    "format_numbers",
    "none_text",
]

#: The choice that stands for ``None`` in the combo box of an optional string parameter.
NONE_CHOICE = "none"
_INT_MAX = 2**31 - 1
_FLOAT_MAX = 1e6  # the bound of a float field whose parameter has neither high nor gui_high
_WORDS = {"lr": "learning rate", "tv": "TV", "fbp": "FBP", "beta": "β"}
_DEFAULT = object()


def parse_numbers(text: str, what: str) -> list[float]:
    """Numbers separated by commas, semicolons or spaces; ValueError naming ``what`` otherwise."""
    cleaned = text.replace(";", " ").replace(",", " ").replace("(", " ").replace(")", " ")
    cleaned = cleaned.replace("[", " ").replace("]", " ")
    try:
        values = [float(tok) for tok in cleaned.split()]
    except ValueError:
        raise ValueError(f"{what} must be numbers separated by commas or semicolons, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{what} must be finite numbers, got {text!r}")
    return values


def format_numbers(values: Sequence[float]) -> str:
    """The inverse of :func:`parse_numbers` for one row: ``"1.5, -2, 0.25"``."""
    return ", ".join(f"{float(v):.6g}" for v in values)


def zero_means_none(param: Any) -> bool:
    """Whether an optional number's field uses 0 for None (0 itself is not a valid value)."""
    return (param.optional and param.type in (int, float) and param.low is not None
            and (param.low > 0 or (param.low == 0 and param.low_open)))


def _spin_kind(param: Any) -> bool:
    return param.type in (int, float) and param.choices is None and (not param.optional or zero_means_none(param))


def field_label(param: Any) -> str:
    """The field's label: the name in words (``tv_weight`` -> ``"TV weight"``), with its units."""
    words = param.name.split("_")
    if param.units and len(words) > 1 and words[-1] == param.units:
        words = words[:-1]  # time_budget_s in s: "time budget (s)"
    text = " ".join(_WORDS.get(w, w) for w in words)
    return f"{text} ({param.units})" if param.units else text


def field_tooltip(param: Any) -> str:
    """The field's tooltip: the parameter's help, its units and how None is given."""
    text = param.help + (f" [{param.units}]" if param.units else "")
    if param.optional:
        if _spin_kind(param):
            text += "; 0 = None"
        elif param.type is str and param.choices is not None:
            text += f"; {NONE_CHOICE!r} = None"
        elif param.type is not bool:
            text += "; empty = None"
    return text


def none_text(param: Any) -> str:
    """What a 0-means-None number field shows at 0: the help's "(None: …)" when short, else "default"."""
    marker = "(None: "
    if marker in param.help:
        said = param.help.split(marker, 1)[1].split(",", 1)[0].split(")", 1)[0].strip()
        if said and len(said) <= 18 and "(" not in said:
            return said
    return "default"


def _text(param: Any, value: Any) -> str:
    if value is None:
        return ""
    if param.type is tuple:
        return format_numbers(value)
    if param.type is dict:
        return json.dumps(value)
    return str(value)


def _float_format(param: Any, default: Any, high: float) -> tuple[float, int]:
    """``(step, decimals)`` of a float field: one step of the default's magnitude, digits to show it."""
    if isinstance(default, (int, float)) and default:
        ref = abs(float(default))
    else:
        ref = high / 1000.0 if high <= 10 else 1.0  # e.g. a learning rate up to 1: steps of 1e-3
    exponent = math.floor(math.log10(ref))
    decimals = max(2, 2 - exponent)
    while isinstance(default, (int, float)) and round(float(default), decimals) != float(default) and decimals < 10:
        decimals += 1
    return 10.0**exponent, decimals


def param_widget(param: Any, *, value: Any = _DEFAULT, choices: Sequence[Any] | None = None,
                 label: str | None = None) -> ValueWidget:
    """The magicgui widget of ``param``.

    Args:
        param: a :class:`reconstruct.tasks.spec.Param`.
        value: the initial value (default: ``param.default``; ``None`` for an optional one).
        choices: values to offer for a string parameter without ``choices`` of its own (e.g. devices).
        label: the label (default: :func:`field_label`).

    int -> SpinBox, float -> FloatSpinBox, bool -> CheckBox, str with choices -> ComboBox, the rest
    (tuples, dicts, free text, optional numbers that 0 cannot stand for) -> LineEdit.
    """
    default = param.default if value is _DEFAULT else value
    common = {"name": param.name, "label": label or field_label(param), "tooltip": field_tooltip(param)}
    if param.type is bool:
        return CheckBox(value=bool(default), **common)
    options = param.choices if param.choices is not None else choices
    if param.type is str and options is not None:
        listed = [NONE_CHOICE, *options] if param.optional else list(options)
        return ComboBox(choices=listed, value=NONE_CHOICE if default is None else default, **common)
    if _spin_kind(param):
        zero = zero_means_none(param)
        start = 0 if default is None else default
        if param.type is int:
            low = 0 if zero else (-_INT_MAX if param.low is None else int(param.low) + int(param.low_open))
            high = int(param.high if param.high is not None else param.gui_high or _INT_MAX)
            return SpinBox(min=low, max=max(high, int(start)), value=int(start), **common)
        high = float(param.high if param.high is not None else param.gui_high or _FLOAT_MAX)
        low = 0.0 if zero else (-high if param.low is None else float(param.low))
        step, decimals = _float_format(param, default, high)
        widget = FloatSpinBox(step=step, **common)
        widget.native.setDecimals(decimals)  # before the range and value: Qt rounds them to it
        widget.min, widget.max = low, max(high, float(start))
        widget.value = float(start)
        if zero:  # shown at 0 instead of "0.00" (the integer spin box cannot: its tooltip says "0 = None")
            widget.native.setSpecialValueText(none_text(param))
        return widget
    return LineEdit(value=_text(param, default), **common)


def read_param(param: Any, widget: ValueWidget) -> Any:
    """The value of ``param``'s field, checked by ``param.check`` (one-line ValueError otherwise)."""
    raw = widget.value
    if isinstance(widget, ComboBox) and param.optional and raw == NONE_CHOICE:
        return None
    if isinstance(widget, (SpinBox, FloatSpinBox)):
        return None if zero_means_none(param) and raw == 0 else param.check(raw)
    if isinstance(widget, LineEdit):
        text = str(raw).strip()
        if param.type is dict:
            if not text and param.optional:
                return None
            try:
                parsed = json.loads(text)
            except ValueError:
                raise ValueError(f"{param.name} must be a JSON object, e.g. {{\"num_frequencies\": 8}}; "
                                 f"got {text!r}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"{param.name} must be a JSON object; got {text!r}")
            return parsed
        if param.type is tuple and text and text.lower() != NONE_CHOICE:
            return param.check(parse_numbers(text, param.name))  # commas, semicolons, spaces or brackets
        return param.parse(text)
    return param.check(raw)


def write_param(param: Any, widget: ValueWidget, value: Any) -> None:
    """Show the parameter value ``value`` in ``param``'s field (the inverse of :func:`read_param`).

    The value is checked by ``param.check`` first, then put in the field's own terms (None: 0,
    ``"none"`` or empty text; a tuple: its numbers as text); a float field shows more decimals when
    the value needs them.

    Raises:
        ValueError, TypeError: the parameter or the field refuses the value (out of the field's
            range, not one of its choices, more digits than a number field can show); one line, and
            the field keeps its value.
    """
    checked = param.check(value)
    if isinstance(widget, CheckBox):
        widget.value = bool(checked)
        return
    if isinstance(widget, ComboBox):
        shown = NONE_CHOICE if checked is None else checked
        if shown not in widget.choices:
            listed = ", ".join(str(c) for c in widget.choices)
            raise ValueError(f"{param.name} must be one of {listed}; got {value!r}")
        widget.value = shown
        return
    if isinstance(widget, (SpinBox, FloatSpinBox)):
        number = 0 if checked is None else checked  # a spin box of an optional parameter: 0 means None
        if not widget.min <= number <= widget.max:
            raise ValueError(f"{param.name} must be in [{widget.min:g}, {widget.max:g}] in its field; got {value!r}")
        if isinstance(widget, FloatSpinBox):
            decimals = widget.native.decimals()
            wanted = decimals
            while round(float(number), wanted) != float(number) and wanted < 10:
                wanted += 1
            if wanted != decimals:
                widget.native.setDecimals(wanted)  # 0.0625 mm must not become 0.06
            before = widget.value
            widget.value = float(number)
            if not math.isclose(float(widget.value), float(number), rel_tol=1e-9, abs_tol=1e-12):
                widget.value = before
                raise ValueError(f"{param.name}: {value!r} has more digits than its field shows")
            return
        widget.value = int(number)
        return
    widget.value = _text(param, checked)


class ParamFields:
    """The widgets of some parameters, by name, and their checked values.

    Args:
        params: the parameters (in display order).
        values: initial values that differ from the defaults (a GUI choice, e.g. the task's steps).
        choices: offered values for string parameters without ``choices`` (e.g. ``{"device": (...)}``).
    """

    def __init__(self, params: Iterable[Any], *, values: Mapping[str, Any] | None = None,
                 choices: Mapping[str, Sequence[Any]] | None = None) -> None:
        values, choices = dict(values or {}), dict(choices or {})
        self.params: dict[str, Any] = {p.name: p for p in params}
        self.widgets: dict[str, ValueWidget] = {
            name: param_widget(p, value=values.get(name, _DEFAULT), choices=choices.get(name))
            for name, p in self.params.items()
        }
        #: The values the fields started with (what "Restore defaults" goes back to).
        self.initial: dict[str, Any] = {name: widget.value for name, widget in self.widgets.items()}

    def __contains__(self, name: object) -> bool:
        return name in self.widgets

    def __getitem__(self, name: str) -> ValueWidget:
        return self.widgets[name]

    def __iter__(self) -> Iterator[ValueWidget]:
        return iter(self.widgets.values())

    def __len__(self) -> int:
        return len(self.widgets)

    def value(self, name: str) -> Any:
        """The checked value of one field."""
        return read_param(self.params[name], self.widgets[name])

    def values(self) -> dict[str, Any]:
        """Parameter name -> checked value, for every field (ValueError naming the first bad one)."""
        return {name: self.value(name) for name in self.widgets}

    def raw(self) -> dict[str, Any]:
        """Field name -> the widget's own value (text, number or flag: JSON-able), for remembering."""
        return {name: widget.value for name, widget in self.widgets.items()}

    def restore(self, values: Mapping[str, Any]) -> list[str]:
        """Set the fields named in ``values`` (unknown names and values a field refuses are skipped).

        Returns the names that were set.
        """
        done = []
        for name, value in values.items():
            widget = self.widgets.get(name)
            if widget is None:
                continue
            try:
                widget.value = value
            except (ValueError, TypeError):  # e.g. "cuda" remembered on a machine without a GPU
                continue
            done.append(name)
        return done

    def set_value(self, name: str, value: Any) -> None:
        """Show the parameter value ``value`` in the field ``name`` (see :func:`write_param`).

        Raises:
            KeyError: no field ``name``.
            ValueError, TypeError: the value is refused (the field keeps its value).
        """
        write_param(self.params[name], self.widgets[name], value)

    def fill(self, values: Mapping[str, Any]) -> tuple[list[str], dict[str, str]]:
        """Set the fields named in ``values`` from parameter values, in the fields' order.

        Names without a field are ignored; a value the parameter or its field refuses is skipped
        (never raised).

        Returns:
            ``(set, skipped)``: the names that were set, and name -> why, for the values skipped.
        """
        done: list[str] = []
        skipped: dict[str, str] = {}
        for name in self.widgets:
            if name not in values:
                continue
            try:
                self.set_value(name, values[name])
            except (ValueError, TypeError, OverflowError) as exc:
                skipped[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                continue
            done.append(name)
        return done, skipped

    def reset(self) -> None:
        """Every field back to the value it started with."""
        for name, widget in self.widgets.items():
            widget.value = self.initial[name]
