"""Layer pickers that choose what a task needs, until the user chooses.

A panel's input picker (:class:`LayerPicker`) lists every layer of its type, but fills itself only
with a *suitable* one: the active layer when it fits, else the most recent one that fits, preferring
layers whose metadata says they are this task's data (a sinogram's ``angles_deg``, frames'
``shifts``).  It never fills itself with a layer marked as ground truth (:func:`is_ground_truth`:
``metadata["role"] == "ground_truth"``, as the sample data marks it, or "ground truth" in the name)
nor with a result of this plugin (:func:`is_result`), so Run at defaults fits the measurement, not
the truth or the previous result.  Once the user picks a layer the picker keeps it while it exists.

An input picker made with ``fills_fields=True`` (the CT panels' measurement pickers) also sets the
panel's parameter fields from the chosen layer's metadata (:meth:`PickersMixin.fill_from_metadata`):
every metadata key that names one of the task's parameters (a sample's ``geometry``,
``source_distance``, ``det_spacing`` ...) fills that field when the layer becomes the chosen one; a
value the field refuses is skipped and said in the panel's status line and the log.

The reference picker (:class:`ReferencePicker`) fills itself with the most recent ground-truth layer
whose shape is the one the task's output will have, so metrics (and the classical baselines'
metrics) appear without a click when the data came with its truth.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Optional

import numpy as np
from magicgui.widgets import Widget, create_widget
from napari.layers import Image, Layer

__all__ = [
    "GROUND_TRUTH",
    "PREVIEW",
    "LayerPicker",
    "ReferencePicker",
    "is_ground_truth",
    "is_result",
    "spatial_ndim",
    "image_with",
    "image_array",
    "check_same_units",
    "PickersMixin",
]

logger = logging.getLogger(__name__)

#: ``layer.metadata["role"]`` of a ground-truth layer (the sample data sets it).
GROUND_TRUTH = "ground_truth"
#: ``layer.metadata["role"]`` of a panel's live preview layer.
PREVIEW = "preview"


def _metadata(layer: Layer) -> dict:
    md = getattr(layer, "metadata", None)
    return md if isinstance(md, dict) else {}


def is_ground_truth(layer: Layer) -> bool:
    """Whether ``layer`` is marked as ground truth (metadata role, or "ground truth" in its name)."""
    return _metadata(layer).get("role") == GROUND_TRUTH or "ground truth" in layer.name.lower()


def is_result(layer: Layer) -> bool:
    """Whether ``layer`` is a result or preview of this plugin (its run record names the task)."""
    md = _metadata(layer)
    return md.get("role") == PREVIEW or "task" in md


def spatial_ndim(layer: Layer) -> int:
    """The layer's number of non-channel axes (an RGB image's colour axis does not count)."""
    return int(layer.ndim)  # napari's ndim already leaves an RGB layer's colour axis out


def image_with(ndim: int, *, rgb: bool = True) -> Callable[[Layer], bool]:
    """A test for plain (not multiscale) image layers with ``ndim`` spatial axes (RGB allowed or not)."""

    def accepts(layer: Layer) -> bool:
        return (isinstance(layer, Image) and not layer.multiscale and spatial_ndim(layer) == ndim
                and (rgb or not layer.rgb))

    return accepts


def _any(layer: Layer) -> bool:
    return False


class LayerPicker:
    """A layer combo box that chooses a suitable layer for the user until the user chooses one.

    Args:
        label: the field's label.
        kind: the napari layer type(s) listed (``Layer`` for any).
        accepts: which listed layers the task can take (default: all of ``kind``).
        prefers: which of those are clearly its data (metadata the task reads), chosen first.
        tooltip: the field's tooltip.
    """

    def __init__(self, label: str, kind: Any = Image, *, accepts: Callable[[Layer], bool] | None = None,
                 prefers: Callable[[Layer], bool] | None = None, tooltip: str = "") -> None:
        self.widget = create_widget(annotation=Optional[kind], label=label,  # noqa: UP045 - magicgui reads Optional
                                    options={"tooltip": tooltip} if tooltip else {})
        self.kind = kind
        self.accepts = accepts or (lambda layer: isinstance(layer, kind))
        self.prefers = prefers or _any
        #: Whether the picker still chooses by itself (False once the user picked a layer).
        self.auto = True
        #: Whether the chosen layer's metadata sets the panel's parameter fields (see
        #: :meth:`PickersMixin.fill_from_metadata`; set by :meth:`PickersMixin.picker`).
        self.fills_fields = False
        self._chosen: weakref.ref | None = None
        self._setting = False
        self.widget.changed.connect(self._on_changed)

    @property
    def value(self) -> Layer | None:
        return self.widget.value

    @value.setter
    def value(self, layer: Layer | None) -> None:
        """Choose ``layer`` as the user would (the picker stops choosing by itself; None resumes it)."""
        self.widget.value = layer

    def _on_changed(self, *_: Any) -> None:
        if self._setting:
            return
        value = self.widget.value
        self.auto = value is None  # the empty choice hands the choice back to the panel
        self._chosen = None if value is None else weakref.ref(value)

    def set_auto(self, layer: Layer | None) -> None:
        """Show ``layer`` without taking the choice from the panel."""
        if layer is self.widget.value:
            return
        self._setting = True
        try:
            self.widget.value = layer
        finally:
            self._setting = False

    def candidates(self, layers: Sequence[Layer]) -> list[Layer]:
        """The layers the picker may choose by itself: suitable, not ground truth, not a result."""
        return [layer for layer in layers
                if self.accepts(layer) and not is_ground_truth(layer) and not is_result(layer)]

    def best(self, layers: Sequence[Layer], active: Layer | None) -> Layer | None:
        """The preferred candidate, then the active one, then the most recent (top of the layer list)."""
        found = self.candidates(layers)
        if not found:
            return None
        order = {id(layer): i for i, layer in enumerate(layers)}
        return max(found, key=lambda layer: (bool(self.prefers(layer)), layer is active, order[id(layer)]))

    def choose(self, viewer: Any) -> None:
        """Re-choose from the viewer's layers while the user has not picked one (or it was removed)."""
        if not self.auto:
            chosen = self._chosen() if self._chosen is not None else None
            if chosen is not None and chosen in viewer.layers:
                self.set_auto(chosen)  # (a refreshed list may have lost the selection)
                return
            self.auto, self._chosen = True, None
        self.set_auto(self.best(list(viewer.layers), viewer.layers.selection.active))


class ReferencePicker(LayerPicker):
    """The optional ground-truth picker: fills itself with a ground-truth layer of the output's shape.

    Args:
        label, tooltip: as :class:`LayerPicker`.
        expected_shape: the output's shape for the current input (None: unknown, nothing is chosen).
    """

    def __init__(self, label: str, *, expected_shape: Callable[[], tuple[int, ...] | None], tooltip: str = "") -> None:
        super().__init__(label, Image, tooltip=tooltip)
        self.expected_shape = expected_shape

    def candidates(self, layers: Sequence[Layer]) -> list[Layer]:
        shape = self.expected_shape()
        if shape is None:
            return []
        return [layer for layer in layers if isinstance(layer, Image) and is_ground_truth(layer)
                and tuple(layer.data.shape) == tuple(shape)]

    def best(self, layers: Sequence[Layer], active: Layer | None) -> Layer | None:
        found = self.candidates(layers)
        return found[-1] if found else None


class PickersMixin:
    """The pickers' side of a task panel (mixed into :class:`napari_nestnet._panel.TaskPanel`, whose
    ``_viewer``, ``_pickers``, ``_ref``, ``_followers``, ``_closed``, ``params``, ``_status`` and
    ``running`` it uses): they choose again on every layer-list change and when the active layer
    changes; fields filled from a layer's metadata follow the layer.
    """

    def picker(self, label: str, kind: Any = Image, *, fills_fields: bool = False, **kwargs: Any) -> LayerPicker:
        """A :class:`LayerPicker` of this panel (chosen for the user on every layer change).

        Args:
            label, kind, kwargs: see :class:`LayerPicker`.
            fills_fields: whether the chosen layer's metadata sets the task's parameter fields
                (:meth:`fill_from_metadata`), each time the choice becomes another layer.
        """
        picker = LayerPicker(label, kind, **kwargs)
        picker.fills_fields = fills_fields
        self._pickers.append(picker)
        if fills_fields:
            self.follow(picker, lambda: self.fill_from_metadata(picker.value))
        return picker

    def fill_from_metadata(self, layer: Layer | None) -> str:
        """Set every task-parameter field whose name is a key of ``layer.metadata`` from its value.

        Only the task's own parameters (the panel's generated fields of ``spec.params_for("gui")``)
        are read; other keys (``angles_deg``, ``description`` ...) are left to the panel.  A value the
        parameter or its field refuses (``geometry="parallel-beam"``, a distance out of range) is
        skipped, never raised.  What was set and skipped is logged and, unless a run is in progress,
        shown in the status line.

        Returns:
            that summary ("" when the metadata names no field).
        """
        md = _metadata(layer) if layer is not None else {}
        wanted = {name: md[name] for name in self.params.widgets if name in md}
        if not wanted:
            return ""
        done, skipped = self.params.fill(wanted)
        parts = []
        if done:
            parts.append(f"set from {layer.name!r} metadata: {', '.join(done)}")
        if skipped:
            parts.append(f"skipped {layer.name!r} metadata " + "; ".join(
                f"{name}={wanted[name]!r} ({why})" for name, why in skipped.items()))
        message = "; ".join(parts)
        logger.log(logging.WARNING if skipped else logging.INFO, "%s: %s", type(self).__name__, message)
        if not self.running and not self._closed:
            self._status.value = message
        return message

    def fill_from_inputs(self) -> str:
        """:meth:`fill_from_metadata` from every field-filling picker's current layer (e.g. after the
        fields went back to their defaults); returns the summaries."""
        return "; ".join(filter(None, (self.fill_from_metadata(p.value) for p in self._pickers if p.fills_fields)))

    def follow(self, choice: LayerPicker | Widget, callback: Any) -> None:
        """Call ``callback`` whenever the layer chosen in ``choice`` becomes another layer.

        Fields that are filled from a layer's metadata (CT angles, multi-frame motion, scale) use it:
        it runs when the layer changes (picked by the user or by the panel), not on every layer-list
        change, so values the user typed are kept.
        """
        widget = choice.widget if isinstance(choice, LayerPicker) else choice
        entry = [widget, callback, None]
        self._followers.append(entry)
        widget.changed.connect(lambda *_: self._sync_follower(entry))

    def _sync_follower(self, entry: list[Any]) -> None:
        widget, callback, seen = entry
        value = widget.value
        if value is not None and seen is not None and seen() is value:
            return
        entry[2] = weakref.ref(value) if value is not None else None
        callback()

    def _expected_shape_or_none(self) -> tuple[int, ...] | None:
        try:
            return self.expected_reference_shape()
        except (ValueError, TypeError, AttributeError):  # e.g. a field being edited
            return None

    def _choose_reference(self, *_: Any) -> None:
        if self._ref is not None and not self._closed:
            self._ref.choose(self._viewer)

    def choose_layers(self) -> None:
        """Let every picker still in the panel's hands choose again (inputs first, then the reference)."""
        if self._closed:
            return
        for picker in self._pickers:
            picker.choose(self._viewer)
        self._choose_reference()

    def reset_choices(self, *args: Any) -> None:
        """Refresh the layer choices (napari calls this on layer-list changes) and choose for the user."""
        if self._closed:
            return
        try:
            pickers = [*self._pickers, *([self._ref] if self._ref is not None else [])]
            for picker in pickers:  # a refreshed list is not the user choosing
                picker._setting = True
            try:
                super().reset_choices(*args)
            finally:
                for picker in pickers:
                    picker._setting = False
            self.choose_layers()
            for entry in self._followers:
                self._sync_follower(entry)
        except RuntimeError:  # the widgets were deleted with the viewer
            self._closed = True

    def _on_active_layer(self, *_: Any) -> None:
        try:
            self.choose_layers()
        except RuntimeError:
            self._closed = True


# ---------------------------------------------------------------------------------------- reading
def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def image_array(layer: Layer | None, what: str, kind: type[Layer] | tuple[type[Layer], ...] = Image) -> np.ndarray:
    """A private copy of ``layer.data`` (float32, or its own integer type) after the checks every panel needs.

    Args:
        layer: the chosen layer (``None`` when the combo box is empty).
        what: how the panel calls this input, for messages (``"sinogram"``, ``"noisy image"``).
        kind: the accepted napari layer type(s).

    Raises:
        ValueError: no layer chosen, a multiscale layer, or NaN/Inf values.
        TypeError: a layer of the wrong type.
    """
    if layer is None:
        raise ValueError(f"choose {_a(what)} layer first (open an image or a sample from File > Open Sample)")
    if not isinstance(layer, kind):
        kinds = kind if isinstance(kind, tuple) else (kind,)
        names = " or ".join(k.__name__ for k in kinds)
        raise TypeError(f"the {what} must be {_a(names)} layer; {layer.name!r} is a {type(layer).__name__} layer")
    if getattr(layer, "multiscale", False):
        raise ValueError(f"{layer.name!r} is a multiscale layer; open its full-resolution level as a plain layer")
    # np.array copies: the worker gets its own data and the layer is never modified.  Integer data keep
    # their type (the tasks scale 8- and 16-bit data by their type's range); the rest becomes float32.
    source = np.asarray(layer.data)
    keep = source.dtype.kind in "biu"
    arr = np.array(source, dtype=source.dtype if keep else np.float32, copy=True)
    if arr.size == 0:
        raise ValueError(f"{layer.name!r} is empty")
    if not keep and not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).sum())
        raise ValueError(f"{layer.name!r} contains {bad} NaN/Inf values; replace them (e.g. numpy.nan_to_num) first")
    return arr


def check_same_units(data: np.ndarray, reference: np.ndarray, what: str, ref_name: str) -> None:
    """A reference on another value scale than the input (0–1 against 0–255) makes every metric meaningless."""
    hi_data = float(np.abs(data.astype(np.float64, copy=False)).max())
    hi_ref = float(np.abs(reference.astype(np.float64, copy=False)).max())
    if hi_data > 0 and hi_ref > 0 and max(hi_data / hi_ref, hi_ref / hi_data) > 20:
        raise ValueError(f"the reference {ref_name!r} reaches {hi_ref:.3g} but the {what} reaches {hi_data:.3g}: "
                         "they are on different value scales, so PSNR/SSIM would be meaningless; rescale one of "
                         "them (e.g. both to 0–1) or clear the reference")
