"""MONAI dictionary transforms that run a NestNet task inside ``monai.transforms.Compose``, one per task.

=========================  ====================  ===============================================
transform                  task                  input (MONAI layout, channel first)
=========================  ====================  ===============================================
:class:`FitImaged`         ``fit_image``         ``(1|3|4, X, Y)``, ``(X, Y)``, ``(1, X, Y, Z)``
:class:`Denoised`          ``denoise``           as FitImaged
:class:`SuperResolved`     ``super_resolve``     as FitImaged
:class:`MultiFrameSuperResolved`  ``super_resolve_multi``  ``(K, X, Y)``: K frames on the channel axis
:class:`CTReconstructd`    ``ct_reconstruct``    ``(1, X, Y)`` or ``(X, Y)`` sinogram
:class:`CTReconstruct3Dd`  ``ct_reconstruct_3d`` ``(1, X, Y, Z)`` or ``(X, Y, Z)`` projections (stack or cone)
:class:`FitOccupancyd`     ``fit_occupancy``     ``(1, X, Y, Z)`` or ``(X, Y, Z)`` binary volume
:class:`SolveConvectiond`  ``solve_convection``  a number: the item's β (None: the ``beta`` given)
=========================  ====================  ===============================================

Each transform's keyword arguments are the task's ``monai``-door parameters from its spec
(:meth:`TaskSpec.params_for`), the common fit settings (``model``, ``model_kwargs``, ``steps``, ``lr``,
``lr_decay``, ``device``, ``seed``, ``time_budget_s``) and, for each per-item data input ``X`` (CT
``angles``, MISR ``shifts``/``rotations``), ``X_key`` (where an item brings its own) and ``X`` (the
default); all are validated by the spec when the transform is built, and an unknown name is a one-line
``TypeError``. The result is a :class:`monai.data.MetaTensor` whose affine follows the task's
``output_grid`` by the rule ``nestnet batch`` uses (:mod:`reconstruct.app.geometry`): the input's
(same grid), ``scale`` times finer over the same area (super-resolution), pixels as wide as the
detector bins (CT), or the task's own grid (the PINN's x and t), so ``SaveImaged`` writes it where it
belongs.

Array convention: MONAI readers (``LoadImage`` with :class:`reconstruct.io.SimpleITKReader`,
``NibabelReader``) return the spatial axes in ITK index order ``(x, y[, z])``, the reverse of the numpy
order of :func:`reconstruct.io.read_image`; with ``index_order="itk"`` (default) the transforms turn
the array to numpy order for the task and the result back, so ``layout``, ``spacing`` and MISR
``shifts`` mean what they mean for ``read_image`` / ``nestnet batch``, and a file written by
``SaveImage`` reads back with ``read_image`` as the task's output. Use ``index_order="numpy"`` for
arrays already in numpy order.

Example::

    pipeline = Compose([
        LoadImaged(keys="sinogram", reader=SimpleITKReader(), image_only=True),
        EnsureChannelFirstd(keys="sinogram"),
        CTReconstructd(keys="sinogram", output_key="image", angles="0:180:60", steps=300),
        SaveImaged(keys="image", output_dir="recon", output_postfix="recon", separate_folder=False),
    ])
    pipeline({"sinogram": "sino.nii.gz"})
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import MetaKeys

from ..tasks import SPECS, TASKS
from ..tasks.spec import FIT_PARAMS, FitSettings, TaskSpec
from .angles import parse_angles, parse_numbers
from .files import json_safe
from .geometry import index_map, own_grid_meta

__all__ = ["network_spec", "NestNetTaskd", "FitImaged", "Denoised", "SuperResolved", "MultiFrameSuperResolved",
           "CTReconstructd", "CTReconstruct3Dd", "FitOccupancyd", "SolveConvectiond", "TRANSFORMS"]

_INDEX_ORDERS = ("itk", "numpy")
_FIT_NAMES = tuple(p.name for p in FIT_PARAMS if "monai" in p.doors and p.name not in ("model", "model_kwargs"))
_COLOURS = (1, 3, 4)


def network_spec(model: Any, model_kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor kwargs)`` of a network given by name, class or ``functools.partial``.

    The tasks build a fresh network for every item (seeded, sized to the data), so a network is named
    rather than passed as an instance. A MONAI bundle names it with ``_target_`` in callable mode::

        "network_def": {"_target_": "monai_nets.NestNet", "_mode_": "callable", "hidden_channels": [64, 64]}

    which gives ``functools.partial(NestNet, hidden_channels=[64, 64])``: here ``("nestnet",
    {"hidden_channels": [64, 64]})``. ``spatial_dims`` and ``out_channels`` are dropped (the data decides
    them); ``model_kwargs`` update the partial's arguments.

    Raises:
        TypeError: an instance, an unregistered class or a partial with positional arguments.
    """
    from monai_nets import available_networks
    from monai_nets.registry import NETWORKS

    kwargs = dict(model_kwargs or {})
    if isinstance(model, str):
        return model, kwargs
    if isinstance(model, torch.nn.Module):
        raise TypeError(f"model is a {type(model).__name__} instance; give its class or a partial "
                        '(bundle: add "_mode_": "callable" to the network definition): the task builds a fresh '
                        "network for every item")
    func, bound = model, {}
    if isinstance(model, functools.partial):
        if model.args:
            raise TypeError("a network partial must bind keyword arguments only (e.g. hidden_channels=...)")
        func, bound = model.func, dict(model.keywords)
    names = {cls: name for name, cls in NETWORKS.items()}
    if not isinstance(func, type) or func not in names:
        raise TypeError(f"model must be a network name ({', '.join(available_networks())}), a network class or a "
                        f"partial of one; got {model!r}")
    for decided_by_data in ("spatial_dims", "out_channels"):
        bound.pop(decided_by_data, None)
    return names[func], {**bound, **kwargs}


# ------------------------------------------------------------------------------------------------ layouts


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a numeric array or tensor, got dtype {arr.dtype}")
    return arr


_KINDS = {
    "image": "(C, X, Y) with C in 1, 3, 4, (X, Y), (1, X, Y, Z) or (X, Y, Z)",
    "sinogram": "a 2-D sinogram (1, H, W) or (H, W) (use EnsureChannelFirstd after LoadImaged, one slice per item)",
    "frames": "(K, X, Y): K low-resolution frames on the channel axis",
    "volume": "a 3-D volume (1, X, Y, Z) or (X, Y, Z)",
}


def _channel_last(arr: np.ndarray, kind: str, what: str) -> tuple[np.ndarray, bool]:
    """``(array as (*spatial, C), whether the input had a channel axis)`` for a MONAI-layout array."""
    nd = arr.ndim
    if kind == "frames" and nd == 3:
        return np.moveaxis(arr, 0, -1), True
    if kind in ("image", "sinogram") and nd == 2:
        return arr[..., None], False
    if kind == "image" and nd == 3 and arr.shape[0] in _COLOURS:
        return np.moveaxis(arr, 0, -1), True
    if kind == "sinogram" and nd == 3 and arr.shape[0] == 1:
        return np.moveaxis(arr, 0, -1), True
    if kind in ("image", "volume") and nd == 3:
        return arr[..., None], False
    if kind in ("image", "volume") and nd == 4 and arr.shape[0] == 1:
        return np.moveaxis(arr, 0, -1), True
    raise ValueError(f"{what} has shape {tuple(arr.shape)}; expected {_KINDS[kind]}")


def _to_task(value: Any, kind: str, what: str, index_order: str) -> tuple[np.ndarray, bool, int]:
    """A MONAI-layout array in the task's numpy layout ``(*spatial[, C])`` (frames: ``(K, *spatial)``),
    whether it had a channel axis, and its number of spatial axes."""
    arr, channel_first = _channel_last(_numpy(value, what), kind, what)
    n = arr.ndim - 1
    if index_order == "itk":  # (x, y[, z], C) -> ([z,] y, x, C)
        arr = arr.transpose(*reversed(range(n)), n)
    arr = np.ascontiguousarray(arr)
    if kind == "frames":
        return np.ascontiguousarray(np.moveaxis(arr, -1, 0)), channel_first, n
    return (arr[..., 0] if arr.shape[-1] == 1 else arr), channel_first, n


def _from_task(out: np.ndarray, n_spatial: int, channel_first: bool, index_order: str) -> np.ndarray:
    """The task's ``(*spatial[, C])`` result in MONAI layout, channel-first when the input was."""
    out = np.asarray(out, dtype=np.float32)
    if out.ndim == n_spatial:
        out = out[..., None]
    if index_order == "itk":
        out = out.transpose(*reversed(range(n_spatial)), n_spatial)
    out = np.moveaxis(out, -1, 0)
    if not channel_first and out.shape[0] == 1:
        out = out[0]
    return np.ascontiguousarray(out)


def _meta_axes(n: int, index_order: str) -> list[int]:
    """Array axis of each geometry (SimpleITK x, y, z) axis."""
    return list(range(n)) if index_order == "itk" else list(reversed(range(n)))


def _default_none(spec: TaskSpec, name: str, value: Any) -> bool:
    """``value`` is None for a parameter that does not take None: it means the default."""
    return value is None and not spec.param(name).optional


class _ClassSignature:
    """``inspect.signature(cls)`` lists the keyword arguments the spec gives the class (instances: none)."""

    def __get__(self, obj: Any, cls: type) -> inspect.Signature:
        if obj is not None or cls.task_name == "":
            raise AttributeError("__signature__")
        return cls._signature()


# ------------------------------------------------------------------------------------------------ base


class NestNetTaskd(MapTransform):
    """Run a :mod:`reconstruct.tasks` task on ``keys`` and store the result under ``output_key``.

    The base of the per-task transforms (use those). Keyword arguments besides the ones below: see the
    module docstring (the spec decides them; ``inspect.signature(CTReconstructd)`` lists them).

    Args:
        keys: keys of the inputs.
        output_key: where each result goes (one per key; default: replace the input).
        model: a network name of :func:`monai_nets.available_networks`, a network class, or a
            ``functools.partial`` of one (a bundle's ``_target_: monai_nets.NestNet`` with
            ``_mode_: callable``); see :func:`network_spec`. Every item fits a fresh, seeded network.
        model_kwargs: constructor arguments when ``model`` is a name.
        index_order: ``"itk"`` (MONAI readers' ``(x, y)`` index order) or ``"numpy"``.
        reference_key: key of a ground truth (same convention as the output) for metrics.
        result_key: if given, ``{"metrics", "best", "seconds", "steps", "stopped_by", "parameters", "stop",
            "tv_search"}`` of the fit go there.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.
    """

    task_name: ClassVar[str] = ""
    #: how the input array is laid out (see ``_KINDS``)
    input_kind: ClassVar[str] = "image"
    #: ``<name>_key`` argument -> ``result.extras`` image stored there on the output's grid
    extra_images: ClassVar[dict[str, str]] = {}
    __signature__ = _ClassSignature()

    @classmethod
    def spec(cls) -> TaskSpec:
        return SPECS[cls.task_name]

    @classmethod
    def _data_inputs(cls) -> tuple[str, ...]:
        return tuple(i.name for i in cls.spec().inputs if i.per_item)

    @classmethod
    def accepted_params(cls) -> tuple[str, ...]:
        """The keyword arguments the spec gives this transform (after the MONAI plumbing)."""
        data = [n for name in cls._data_inputs() for n in (f"{name}_key", name)]
        return (*_FIT_NAMES, *(p.name for p in cls.spec().params_for("monai")), *data, *cls.extra_images)

    @classmethod
    def _signature(cls) -> inspect.Signature:
        kw, pos = inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD
        spec = cls.spec()
        defaults = {p.name: p.default for p in (*FIT_PARAMS, *spec.params)}
        params = [inspect.Parameter("keys", pos), inspect.Parameter("output_key", pos, default=None)]
        for name, default in (("model", "nestnet"), ("model_kwargs", None), ("index_order", "itk"),
                              ("reference_key", None), ("result_key", None), ("allow_missing_keys", False)):
            params.append(inspect.Parameter(name, kw, default=default))
        for name in cls.accepted_params():
            default = defaults.get(name)
            if name.endswith("_key") and name[:-4] in cls._data_inputs():
                default = name[:-4]
            params.append(inspect.Parameter(name, kw, default=default))
        return inspect.Signature(params)

    def __init__(self, keys: KeysCollection, output_key: str | Sequence[str] | None = None, *, model: Any = "nestnet",
                 model_kwargs: Mapping[str, Any] | None = None, index_order: str = "itk",
                 reference_key: str | None = None, result_key: str | None = None,
                 allow_missing_keys: bool = False, **kwargs: Any) -> None:
        if not self.task_name:
            raise TypeError("NestNetTaskd is a base class; use CTReconstructd, Denoised, FitImaged, ...")
        super().__init__(keys, allow_missing_keys)
        name = type(self).__name__
        unknown = sorted(set(kwargs) - set(self.accepted_params()))
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
                            f"{', '.join(self.accepted_params())}")
        if output_key is None:
            self.output_keys: tuple[Hashable, ...] = tuple(self.keys)
        else:
            self.output_keys = (output_key,) if isinstance(output_key, str) else tuple(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"output_key names {len(self.output_keys)} keys but keys has {len(self.keys)}; "
                             "give one output key per input key")
        if index_order not in _INDEX_ORDERS:
            raise ValueError(f"index_order must be 'itk' (MONAI readers) or 'numpy', got {index_order!r}")
        spec = self.spec()
        self.index_order = index_order
        self.model, kwargs_of_model = network_spec(model, model_kwargs)
        # None for a parameter that does not take None means its default (as in nestnet batch)
        fit = {k: kwargs[k] for k in _FIT_NAMES if k in kwargs and not _default_none(spec, k, kwargs[k])}
        FitSettings.create(spec, model=self.model, model_kwargs=kwargs_of_model or None, **fit)  # validates
        self.fit_kwargs: dict[str, Any] = {"model": self.model, **fit}
        if kwargs_of_model:
            self.fit_kwargs["model_kwargs"] = kwargs_of_model
        task = {p.name: kwargs[p.name] for p in spec.params_for("monai")
                if p.name in kwargs and not _default_none(spec, p.name, kwargs[p.name])}
        checked = spec.check_params(task)
        self.task_kwargs: dict[str, Any] = {k: checked[k] for k in task}
        self.data_keys = {n: kwargs.get(f"{n}_key", n) for n in self._data_inputs()}
        self.data_defaults = {n: self._check_data(n, kwargs.get(n)) for n in self._data_inputs()}
        self.extra_keys = {k: kwargs.get(k) for k in self.extra_images}
        self.reference_key = reference_key
        self.result_key = result_key

    @staticmethod
    def _check_data(name: str, value: Any) -> Any:
        """A per-item data value as the task takes it (a bad spec fails when the pipeline is built)."""
        if value is None:
            return None
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        return parse_angles(value) if name == "angles" else parse_numbers(value, name)

    def _param(self, name: str) -> Any:
        return self.task_kwargs.get(name, self.spec().param(name).default)

    # subclasses: the data inputs of one item
    def _inputs(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        return {self.spec().inputs[0].name: image}

    def _data(self, name: str, data: Mapping[Hashable, Any]) -> Any:
        key = self.data_keys[name]
        value = data.get(key) if key is not None else None
        return self.data_defaults[name] if value is None else self._check_data(name, value)

    def _task_input(self, value: Any, key: Hashable) -> tuple[Any, tuple[int, bool]]:
        """The task's input from ``data[key]``, and ``(spatial axes, channel-first)`` of the output."""
        arr, channel_first, n = _to_task(value, self.input_kind, f"data[{key!r}]", self.index_order)
        return arr, (n, channel_first)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            value = d[key]
            task_input, layout = self._task_input(value, key)
            kwargs = {**self.fit_kwargs, **self.task_kwargs, **self._inputs(task_input, d)}
            if self.reference_key is not None and d.get(self.reference_key) is not None:
                kind = "volume" if self.input_kind == "volume" else "image"
                what = f"data[{self.reference_key!r}]"
                kwargs["reference"], _, _ = _to_task(d[self.reference_key], kind, what, self.index_order)
            result = TASKS[self.task_name](**kwargs)
            d[out_key] = self._meta_tensor(value, result, result.output, layout)
            for arg, extra in self.extra_images.items():
                if self.extra_keys.get(arg) is not None and (result.extras or {}).get(extra) is not None:
                    d[self.extra_keys[arg]] = self._meta_tensor(value, result, result.extras[extra], layout)
            if self.result_key is not None:
                d[self.result_key] = self._summary(result)
        return d

    @staticmethod
    def _summary(result: Any) -> dict[str, Any]:
        best = result.best
        return {
            "metrics": {k: float(v) for k, v in (result.metrics or {}).items()},
            "best": None if best is None else {"step": int(best.step),
                                               "metrics": {k: float(v) for k, v in (best.metrics or {}).items()}},
            "seconds": float(result.seconds),
            "steps": int(result.steps),
            "stopped_by": str(result.stopped_by),
            "parameters": json_safe((result.extras or {}).get("parameters", {})),
            # the ground-truth-free choices: the stop (step, held-out curve) and, when searched, the TV weight
            "stop": json_safe((result.extras or {}).get("stop")),
            "tv_search": json_safe((result.extras or {}).get("tv_search")),
        }

    # ------------------------------------------------------------------------------------- geometry

    def _output_affine(self, value: Any, result: Any, n: int) -> torch.Tensor:
        """The output's index-to-world affine by the spec's ``output_grid`` (the shared rule)."""
        spec = self.spec()
        if spec.output_grid == "own":
            meta = own_grid_meta(result.extras)
            affine = torch.eye(4, dtype=torch.float64)
            if meta is not None:
                for k, axis in enumerate(_meta_axes(n, self.index_order)):
                    affine[axis, axis] = meta.spacing[k]
                    affine[axis, 3] = meta.origin[k]
            return affine
        affine = value.affine.detach().to(torch.float64).clone() if isinstance(value, MetaTensor) \
            else torch.eye(4, dtype=torch.float64)
        if spec.output_grid == "same":
            return affine
        axes = _meta_axes(n, self.index_order)
        norms = np.linalg.norm(affine[:-1, :n].numpy(), axis=0)
        norms[norms == 0] = 1.0
        m = index_map(spec, [norms[a] for a in axes], (result.extras or {}).get("parameters") or self.task_kwargs)
        full = np.eye(affine.shape[-1])
        for k, a in enumerate(axes):
            full[a, a] = m[k, k]
            full[a, -1] = m[k, -1]
        return affine @ torch.as_tensor(full, dtype=affine.dtype)

    def _meta_tensor(self, value: Any, result: Any, out: Any, layout: tuple[int, bool]) -> MetaTensor:
        n, channel_first = layout
        arr = _from_task(np.asarray(out), n, channel_first, self.index_order)
        affine = self._output_affine(value, result, n)
        meta = {k: v for k, v in value.meta.items() if k not in (MetaKeys.AFFINE, MetaKeys.ORIGINAL_AFFINE)} \
            if isinstance(value, MetaTensor) else {}
        meta[MetaKeys.ORIGINAL_AFFINE] = affine.numpy().copy()  # SaveImage(resample=True) must not undo it
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(arr.shape[-n:])
        meta["nestnet_task"] = self.task_name
        return MetaTensor(torch.from_numpy(arr), affine=affine, meta=meta)


# ------------------------------------------------------------------------------------------------ tasks


class FitImaged(NestNetTaskd):
    """Represent an image or volume with a coordinate network (:func:`reconstruct.tasks.fit_image`); same grid."""

    task_name = "fit_image"


class Denoised(NestNetTaskd):
    """Denoise an image or volume by an early-stopped fit (:func:`reconstruct.tasks.denoise`); same grid."""

    task_name = "denoise"


class SuperResolved(NestNetTaskd):
    """Super-resolve an image ``scale`` times (:func:`reconstruct.tasks.super_resolve`).

    The output affine covers the same area: spacing divided by ``scale``, the first pixel centre moved
    towards the area's edge by half a coarse pixel minus half a fine one. ``bicubic_key``: where the
    bicubic baseline goes (same grid).
    """

    task_name = "super_resolve"
    extra_images = {"bicubic_key": "bicubic"}


class MultiFrameSuperResolved(NestNetTaskd):
    """Multi-frame super-resolution with known motion (:func:`reconstruct.tasks.super_resolve_multi`).

    The input holds ``K`` grey frames on the channel axis, ``(K, X, Y)`` (e.g. ``ConcatItemsd`` of
    channel-first frames); the output is ``(1, X·scale, Y·scale)`` on the finer grid of the frames'
    area. ``shifts`` (``(K, 2)``, ``(dy, dx)`` in high-resolution pixels, numpy order) and ``rotations``
    (``(K,)`` radians; default 0) come from ``shifts_key``/``rotations_key`` of the item or the
    ``shifts``/``rotations`` arguments (arrays or files).
    """

    task_name = "super_resolve_multi"
    input_kind = "frames"
    extra_images = {"bicubic_key": "bicubic"}

    def _inputs(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        shifts = self._data("shifts", data)
        if shifts is None:
            raise ValueError(f"{type(self).__name__} needs per-frame shifts: data[{self.data_keys['shifts']!r}] or "
                             "shifts=... ((K, 2) dy, dx in high-resolution pixels)")
        shifts = np.asarray(shifts, dtype=np.float64)
        rotations = self._data("rotations", data)
        rotations = np.zeros(len(image)) if rotations is None else np.asarray(rotations, dtype=np.float64).ravel()
        return {"frames": image, "shifts": shifts.reshape(-1, 2), "rotations": rotations}


class CTReconstructd(NestNetTaskd):
    """Reconstruct a CT image from a parallel-beam sinogram (:func:`reconstruct.tasks.ct_reconstruct`).

    Angles (degrees) come from ``angles_key`` of the item (array, list, ``"start:stop:count"`` or an
    angles file) or ``angles`` (same forms); default ``0:180:<number of projections>``. ``layout`` is in
    numpy order (as the file was written from numpy). ``fbp_key``: where the filtered back-projection goes
    (same geometry). The output's affine keeps the sinogram's origin and axis directions, with pixels as
    wide as the detector bins.
    """

    task_name = "ct_reconstruct"
    input_kind = "sinogram"
    extra_images = {"fbp_key": "fbp"}

    def _inputs(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        angles = self._data("angles", data)
        if angles is None:
            n_angles = image.shape[1] if self._param("layout") == "skimage" else image.shape[0]
            angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
        return {"sinogram": image.astype(np.float32), "angles": angles}


class CTReconstruct3Dd(NestNetTaskd):
    """Reconstruct a CT volume with one INR (:func:`reconstruct.tasks.ct_reconstruct_3d`).

    The input is a sinogram stack ``(Z, n_angles, n_det)`` or cone-beam projections ``(n_views, rows, cols)``
    in numpy order (``(1, X, Y, Z)`` / ``(X, Y, Z)`` as MONAI readers give them, ``index_order="itk"``).
    Angles (degrees) come from ``angles_key`` or ``angles``; default 0:180 (parallel) or 0:360 (fan, cone),
    one per projection. The output's affine is the volume's own grid (``extras["spacing"]``/``["origin"]``,
    mm, centred on the rotation axis); ``fbp_key``: where the FBP/FDK volume goes.
    """

    task_name = "ct_reconstruct_3d"
    input_kind = "volume"
    extra_images = {"fbp_key": "fbp"}

    def _inputs(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        angles = self._data("angles", data)
        if angles is None:
            geometry = self._param("geometry")
            n_angles = image.shape[0] if geometry == "cone" else image.shape[1]
            angles = np.linspace(0.0, 180.0 if geometry == "parallel" else 360.0, n_angles, endpoint=False)
        return {"projections": image.astype(np.float32), "angles": angles}


class FitOccupancyd(NestNetTaskd):
    """Fit an occupancy volume (:func:`reconstruct.tasks.fit_occupancy`): the output is the probability, same grid.

    The input is a binary volume (bool or 0/1; ``(1, X, Y, Z)`` or ``(X, Y, Z)``); without a reference the
    IoU is measured against the input. ``spacing`` is in numpy array order.
    """

    task_name = "fit_occupancy"
    input_kind = "volume"


class SolveConvectiond(NestNetTaskd):
    """Solve ``u_t + β u_x = 0`` with a PINN (:func:`reconstruct.tasks.solve_convection`).

    ``keys`` hold each item's β (a number; None takes the ``beta`` argument); the solution on the task's
    own ``(x, t)`` grid goes to ``output_key`` as ``(1, nt, nx)`` in ITK index order (``(1, nx, nt)`` with
    ``index_order="numpy"``), its affine giving the x and t steps.
    """

    task_name = "solve_convection"

    def _task_input(self, value: Any, key: Hashable) -> tuple[Any, tuple[int, bool]]:
        if value is None:
            return self._param("beta"), (2, True)
        beta = _numpy(value, f"data[{key!r}]")
        if beta.size != 1:
            raise ValueError(f"data[{key!r}] must be one number (beta), got shape {tuple(beta.shape)}")
        return self.spec().param("beta").check(float(beta.reshape(-1)[0])), (2, True)

    def _inputs(self, image: Any, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        return {"beta": image}


#: Task name -> its transform, for every task of :data:`reconstruct.tasks.SPECS`.
TRANSFORMS: dict[str, type[NestNetTaskd]] = {
    cls.task_name: cls
    for cls in (FitImaged, Denoised, SuperResolved, MultiFrameSuperResolved, CTReconstructd, CTReconstruct3Dd,
                FitOccupancyd, SolveConvectiond)
}
