"""Reading and writing images, JSON records and checkpoints: the public ``reconstruct.io.*`` names.

Kept for the public API (``configs/inference.json``, the README and user scripts call
``reconstruct.io.read_image``, ``reconstruct.io.SimpleITKReader``, ...). The code lives in the
application floor, :mod:`reconstruct.app`: files and records in :mod:`reconstruct.app.files`, geometry
in :mod:`reconstruct.app.meta`, images in :mod:`reconstruct.app.images`, checkpoints in
:mod:`reconstruct.app.checkpoints` and the MONAI reader in :mod:`reconstruct.app.monai_reader`.

This is an application module: the science modules of :mod:`reconstruct` never import it.

Example::

    arr, meta = read_image("ct.nii.gz")
    write_image("recon.nii.gz", recon, meta)  # same spacing/origin/direction as the input
"""

from __future__ import annotations

from .app.checkpoints import CHECKPOINT_FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from .app.files import atomic_write_text, check_output_path, write_json
from .app.images import SUPPORTED_SUFFIXES, WRITABLE_SUFFIXES, image_format, read_image, write_image
from .app.meta import ImageMeta
from .app.monai_reader import SimpleITKReader

__all__ = [
    "ImageMeta",
    "SUPPORTED_SUFFIXES",
    "WRITABLE_SUFFIXES",
    "CHECKPOINT_FORMAT_VERSION",
    "image_format",
    "read_image",
    "write_image",
    "atomic_write_text",
    "write_json",
    "check_output_path",
    "save_checkpoint",
    "load_checkpoint",
    "load_model",
    "SimpleITKReader",
]
