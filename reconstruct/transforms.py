"""MONAI dictionary transforms that run a NestNet reconstruction task inside ``monai.transforms.Compose``.

Each transform reads an array from the data dict, runs one :mod:`reconstruct.tasks` recipe on it and
stores the result as a :class:`monai.data.MetaTensor` whose meta dict follows the input's: the affine is
kept (same grid), re-derived for a CT image (pixels as wide as the detector bins, origin and direction
kept) or for a super-resolved grid (spacing / scale, same area covered), so ``SaveImaged`` writes
the result where it belongs in world space.

Array convention: MONAI's. A 2-D image is ``(C, H, W)`` channel-first (``C`` = 1 or 3; what
``EnsureChannelFirstd`` produces) or has no channel axis; the output keeps the input's convention. MONAI
readers (``LoadImage`` with :class:`reconstruct.io.SimpleITKReader`, ``NibabelReader``) return the
spatial axes in ITK index order ``(x, y)``, the transpose of the numpy order ``(rows, columns)`` of
:func:`reconstruct.io.read_image`; with ``index_order="itk"`` (default) the transforms turn the array
back to numpy order for the task and the result back to index order, so ``layout`` means what it means
for ``read_image``/``nestnet batch`` (a sinogram stored from a numpy ``(detectors, angles)`` array is
``"skimage"``) and a file written by ``SaveImage`` reads back with ``read_image`` as the task's output.
Use ``index_order="numpy"`` for arrays already in numpy order.

Example::

    from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, SaveImaged
    from reconstruct.io import SimpleITKReader
    from reconstruct.transforms import CTReconstructd

    pipeline = Compose([
        LoadImaged(keys="sinogram", reader=SimpleITKReader(), image_only=True),
        EnsureChannelFirstd(keys="sinogram"),
        CTReconstructd(keys="sinogram", output_key="image", angles="0:180:60", steps=300),
        SaveImaged(keys="image", output_dir="recon", output_postfix="recon", separate_folder=False),
    ])
    pipeline({"sinogram": "sino.nii.gz"})

This is an application module: the science modules of :mod:`reconstruct` never import it.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform
from monai.utils import MetaKeys

__all__ = ["network_spec", "NestNetTaskd", "CTReconstructd", "Denoised", "FitImaged", "SuperResolved"]


def _numpy(value: Any, what: str) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what} must be a numeric array or tensor, got dtype {arr.dtype}")
    return arr


_INDEX_ORDERS = ("itk", "numpy")


def _to_task_layout(value: Any, what: str, index_order: str, allow_colour: bool = True) -> tuple[np.ndarray, bool]:
    """MONAI ``(C, *spatial)`` / ``(*spatial)`` -> the tasks' numpy-order ``(H, W)`` / ``(H, W, C)``, and
    whether a channel axis was there."""
    arr = _numpy(value, what)
    if arr.ndim == 3 and (arr.shape[0] == 1 or (arr.shape[0] == 3 and allow_colour)):
        channel_first, arr = True, np.moveaxis(arr, 0, -1)
    elif arr.ndim == 2:
        channel_first, arr = False, arr[..., None]
    else:
        kinds = "(1, H, W), (3, H, W) or (H, W)" if allow_colour else "(1, H, W) or (H, W)"
        raise ValueError(f"{what} has shape {tuple(arr.shape)}; expected a 2-D image {kinds} "
                         "(use EnsureChannelFirstd after LoadImaged, one slice per item)")
    if index_order == "itk":  # (x, y, C) -> (y, x, C)
        arr = arr.transpose(1, 0, 2)
    arr = np.ascontiguousarray(arr)
    return (arr[..., 0] if arr.shape[-1] == 1 else arr), channel_first


def _from_task_layout(out: np.ndarray, channel_first: bool, index_order: str) -> np.ndarray:
    """The task's numpy-order ``(H, W)`` / ``(H, W, C)`` -> MONAI layout, channel-first when the input was."""
    out = np.asarray(out, dtype=np.float32)
    if out.ndim == 2:
        out = out[..., None]
    if index_order == "itk":
        out = out.transpose(1, 0, 2)
    out = np.moveaxis(out, -1, 0)
    if not channel_first and out.shape[0] == 1:
        out = out[0]
    return np.ascontiguousarray(out)


def _affine_of(value: Any) -> torch.Tensor | None:
    if isinstance(value, MetaTensor):
        return value.affine.detach().to(torch.float64).clone()
    return None


def _spatial_affine(affine: torch.Tensor, matrix: np.ndarray) -> torch.Tensor:
    """``affine @ M`` for a 2-D index transform ``M`` (3x3), padded to the affine's own size."""
    size = affine.shape[-1]
    full = np.eye(size)
    full[:2, :2] = matrix[:2, :2]
    full[:2, -1] = matrix[:2, -1]
    return affine @ torch.as_tensor(full, dtype=affine.dtype)


def network_spec(model: Any, model_kwargs: Mapping[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
    """``(registry name, constructor kwargs)`` of a network given by name, class or ``functools.partial``.

    The tasks build a fresh network for every item (seeded, sized to the data), so a network is named
    rather than passed as an instance. A MONAI bundle names it with ``_target_`` in callable mode::

        "network_def": {"_target_": "monai_nets.NestNet", "_mode_": "callable", "hidden_channels": [64, 64]}

    which gives ``functools.partial(NestNet, hidden_channels=[64, 64])``: here ``("nestnet",
    {"hidden_channels": [64, 64]})``. ``spatial_dims`` and ``out_channels`` are dropped (the data decides
    them); ``model_kwargs`` update the partial's arguments.

    Args:
        model: a name of :func:`monai_nets.available_networks`, a registered network class, or a
            ``functools.partial`` of one with keyword arguments.
        model_kwargs: further constructor arguments.

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


class NestNetTaskd(MapTransform):
    """Run a :mod:`reconstruct.tasks` function on ``keys`` and store the result under ``output_key``.

    Base class of :class:`CTReconstructd`, :class:`Denoised`, :class:`FitImaged` and
    :class:`SuperResolved`; use those.

    Args:
        keys: keys of the inputs.
        output_key: where each result goes (one per key; default: replace the input).
        model: a network name of :func:`monai_nets.available_networks`, a network class, or a
            ``functools.partial`` of one (a bundle's ``_target_: monai_nets.NestNet`` with
            ``_mode_: callable``); see :func:`network_spec`. Every item fits a fresh, seeded network.
        model_kwargs: constructor arguments when ``model`` is a name.
        index_order: ``"itk"`` when the arrays' spatial axes are in ITK/MONAI index order ``(x, y)`` (what
            MONAI readers give), ``"numpy"`` for numpy ``(rows, columns)``; see the module notes.
        steps, lr, lr_decay, seed, time_budget_s: the task's fit settings (None: the task's default).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        reference_key: key of a ground truth image (same convention as the input) for metrics.
        result_key: if given, ``{"metrics", "seconds", "steps", "stopped_by"}`` of the fit go there.
        allow_missing_keys: skip absent keys instead of raising ``KeyError``.
        task_kwargs: further keyword arguments of the task function.
    """

    task_name: str = ""

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str | Sequence[str] | None = None,
        model: Any = "nestnet",
        model_kwargs: Mapping[str, Any] | None = None,
        steps: int | None = None,
        lr: float | None = None,
        lr_decay: float | None = None,
        seed: int | None = None,
        time_budget_s: float | None = None,
        device: str = "auto",
        index_order: str = "itk",
        reference_key: str | None = None,
        result_key: str | None = None,
        allow_missing_keys: bool = False,
        **task_kwargs: Any,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_key is None:
            self.output_keys: tuple[Hashable, ...] = tuple(self.keys)
        else:
            self.output_keys = (output_key,) if isinstance(output_key, str) else tuple(output_key)
        if len(self.output_keys) != len(self.keys):
            raise ValueError(f"output_key names {len(self.output_keys)} keys but keys has {len(self.keys)}; "
                             "give one output key per input key")
        if index_order not in _INDEX_ORDERS:
            raise ValueError(f"index_order must be 'itk' (MONAI readers) or 'numpy', got {index_order!r}")
        self.index_order = index_order
        self.model, model_kwargs = network_spec(model, model_kwargs)
        self.fit_kwargs: dict[str, Any] = {
            k: v for k, v in {"model_kwargs": model_kwargs or None, "steps": steps,
                              "lr": lr, "lr_decay": lr_decay, "seed": seed, "time_budget_s": time_budget_s,
                              "device": device}.items() if v is not None
        }
        self.reference_key = reference_key
        self.result_key = result_key
        self.task_kwargs = dict(task_kwargs)

    # subclasses: how to call the task and what geometry the output has
    def _run(self, image: np.ndarray, data: Mapping[Hashable, Any], kwargs: dict[str, Any]) -> Any:
        from . import tasks

        return getattr(tasks, self.task_name)(image, **kwargs)

    def _output_index_map(self, affine: np.ndarray, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        """3x3 map from output array indices to input array indices (identity: same grid).

        Args:
            affine: the input's index-to-world affine.
            image: the input in the task layout.
            out: the output in MONAI layout.
        """
        return np.eye(3)

    def _allow_colour(self) -> bool:
        return True

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key, out_key in self.key_iterator(d, self.output_keys):
            value = d[key]
            image, channel_first = _to_task_layout(value, f"data[{key!r}]", self.index_order, self._allow_colour())
            kwargs = {**self.fit_kwargs, **self.task_kwargs, "model": self.model}
            if self.reference_key is not None and self.reference_key in d:
                kwargs["reference"], _ = _to_task_layout(d[self.reference_key], f"data[{self.reference_key!r}]",
                                                         self.index_order)
            result = self._run(image, d, kwargs)
            out = _from_task_layout(result.output, channel_first, self.index_order)
            d[out_key] = self._meta_tensor(value, image, out, channel_first)
            if self.result_key is not None:
                d[self.result_key] = {
                    "metrics": {k: float(v) for k, v in (result.metrics or {}).items()},
                    "seconds": float(result.seconds),
                    "steps": int(result.steps),
                    "stopped_by": str(result.stopped_by),
                }
            self._store_extras(d, value, image, result, channel_first)
        return d

    def _store_extras(self, d: dict, value: Any, image: np.ndarray, result: Any, channel_first: bool) -> None:
        """Hook for extra outputs (the FBP image of a CT reconstruction)."""

    def _meta_tensor(self, value: Any, image: np.ndarray, out: np.ndarray, channel_first: bool) -> MetaTensor:
        spatial = out.shape[1:] if out.ndim == 3 else out.shape
        affine = _affine_of(value)
        if affine is None:
            return MetaTensor(torch.from_numpy(out))
        affine = _spatial_affine(affine, self._output_index_map(affine.numpy(), image, out))
        meta = {k: v for k, v in value.meta.items() if k not in (MetaKeys.AFFINE, MetaKeys.ORIGINAL_AFFINE)}
        meta[MetaKeys.ORIGINAL_AFFINE] = affine.numpy().copy()  # SaveImage(resample=True) must not undo it
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray(spatial)
        meta["nestnet_task"] = self.task_name
        return MetaTensor(torch.from_numpy(out), affine=affine, meta=meta)


class CTReconstructd(NestNetTaskd):
    """Reconstruct a CT image from a parallel-beam sinogram with :func:`reconstruct.tasks.ct_reconstruct`.

    Args:
        keys: key(s) of the sinogram(s): ``(1, a, b)`` or ``(a, b)``.
        output_key: where the reconstruction goes (e.g. ``"image"``; default: replace the sinogram).
        angles_key: key holding each item's angles in degrees (array, list, ``"start:stop:count"`` or an
            angles file); used when present in the data.
        angles: fixed angles for items without ``angles_key`` (same forms); default
            ``0:180:<number of projections>``.
        layout: ``"skimage"`` (detectors × angles) or ``"torch"`` (angles × detectors), in numpy order (as
            the file was written from numpy; see ``index_order`` and the module notes).
        fbp_key: if given, the filtered back-projection image is stored there too (same geometry).
        kwargs: see :class:`NestNetTaskd` (``model``, ``steps``, ``reference_key``, ...) and
            ``ct_reconstruct`` (``output_size``, ``filter_name``, ``tv_weight``).

    The output's affine keeps the sinogram's origin and axis directions, with pixels as wide as the
    detector bins (the norm of the affine column of the detector axis).
    """

    task_name = "ct_reconstruct"

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str | Sequence[str] | None = None,
        angles_key: str | None = "angles",
        angles: Any = None,
        layout: str = "skimage",
        fbp_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        from .radon import LAYOUTS

        super().__init__(keys, output_key, **kwargs)
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
        self.angles_key = angles_key
        self.layout = layout
        self.fbp_key = fbp_key
        self.angles = angles
        if angles is not None:
            from .batch import parse_angles

            parse_angles(angles)  # a bad spec fails when the pipeline is built, not per item

    def _allow_colour(self) -> bool:
        return False

    def _angles_for(self, image: np.ndarray, data: Mapping[Hashable, Any]) -> np.ndarray:
        from .batch import parse_angles

        spec = data.get(self.angles_key) if self.angles_key is not None else None
        if spec is None:
            spec = self.angles
        if isinstance(spec, torch.Tensor):
            spec = spec.detach().cpu().numpy()
        angles = parse_angles(spec)
        if angles is None:
            n_angles = image.shape[1] if self.layout == "skimage" else image.shape[0]
            angles = np.linspace(0.0, 180.0, n_angles, endpoint=False)
        return angles

    def _run(self, image: np.ndarray, data: Mapping[Hashable, Any], kwargs: dict[str, Any]) -> Any:
        from . import tasks

        return tasks.ct_reconstruct(image.astype(np.float32), self._angles_for(image, data), layout=self.layout,
                                    **kwargs)

    def _output_index_map(self, affine: np.ndarray, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        det_axis = 0 if self.layout == "skimage" else 1  # numpy order; index order reverses the axes
        if self.index_order == "itk":
            det_axis = 1 - det_axis
        norms = np.linalg.norm(affine[:-1, :2], axis=0)  # world length of one step along each array axis
        norms[norms == 0] = 1.0
        scale = norms[det_axis] / norms  # each output axis steps one detector bin
        return np.diag([scale[0], scale[1], 1.0])

    def _store_extras(self, d: dict, value: Any, image: np.ndarray, result: Any, channel_first: bool) -> None:
        if self.fbp_key is None or "fbp" not in (result.extras or {}):
            return
        fbp = _from_task_layout(np.asarray(result.extras["fbp"]), channel_first, self.index_order)
        d[self.fbp_key] = self._meta_tensor(value, image, fbp, channel_first)


class Denoised(NestNetTaskd):
    """Denoise an image with :func:`reconstruct.tasks.denoise`; the output keeps the input's grid and meta.

    Args:
        keys: key(s) of the noisy image(s): ``(1|3, H, W)`` or ``(H, W)``.
        output_key: where the result goes (default: replace the input).
        kwargs: see :class:`NestNetTaskd`.
    """

    task_name = "denoise"


class FitImaged(NestNetTaskd):
    """Represent an image with a coordinate network (:func:`reconstruct.tasks.fit_image`); same grid and meta.

    Args:
        keys: key(s) of the image(s): ``(1|3, H, W)`` or ``(H, W)``.
        output_key: where the rendering goes (default: replace the input).
        kwargs: see :class:`NestNetTaskd`.
    """

    task_name = "fit_image"


class SuperResolved(NestNetTaskd):
    """Super-resolve an image ``scale`` times with :func:`reconstruct.tasks.super_resolve`.

    The output affine covers the same area: spacing divided by ``scale``, the first pixel centre moved
    towards the area's edge by half a coarse pixel minus half a fine one.

    Args:
        keys: key(s) of the low-resolution image(s): ``(1|3, h, w)`` or ``(h, w)``.
        output_key: where the result goes (default: replace the input).
        scale: integer up-sampling factor.
        kwargs: see :class:`NestNetTaskd`.
    """

    task_name = "super_resolve"

    def __init__(self, keys: KeysCollection, output_key: str | Sequence[str] | None = None, scale: int = 4,
                 **kwargs: Any) -> None:
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive integer, got {scale!r}")
        super().__init__(keys, output_key, scale=scale, **kwargs)
        self.scale = scale

    def _output_index_map(self, affine: np.ndarray, image: np.ndarray, out: np.ndarray) -> np.ndarray:
        # fine pixel i has its centre at coarse index (i + 0.5) / scale - 0.5
        s = 1.0 / self.scale
        return np.array([[s, 0.0, (s - 1) / 2], [0.0, s, (s - 1) / 2], [0.0, 0.0, 1.0]])
