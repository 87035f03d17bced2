"""The application floor's shared helpers: one-line messages, versions, JSON and the output-geometry rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reconstruct.app.files import atomic_write, json_safe, one_line, prepare_target, versions, write_json
from reconstruct.app.meta import ImageMeta, ct_meta, sr_meta

ROOT = Path(__file__).resolve().parents[2]

ITK_MESSAGE = (
    "Exception thrown in SimpleITK ReadImage: /src/Code/IO/src/sitkImageReaderBase.cxx:97:\n"
    "sitk::ERROR: Unable to determine ImageIO reader for \"scan.nii\"\n"
)


def test_one_line_keeps_the_informative_line():
    assert one_line(ITK_MESSAGE) == 'Unable to determine ImageIO reader for "scan.nii"'
    assert one_line("summary\n  detail one\n  detail two", keep="first") == "summary"
    assert one_line("summary\n  detail", keep="last") == "detail"
    assert one_line("x" * 300, limit=50) == "x" * 47 + "..."
    assert one_line("x" * 300, limit=None) == "x" * 300
    assert one_line("   ") == "unknown error"
    assert one_line("", fallback="KeyError") == "KeyError"


def test_versions_names_every_library_of_a_record():
    found = versions()
    assert set(found) == {"python", "napari-nestnet", "torch", "monai", "numpy", "scikit-image", "SimpleITK"}
    assert found["numpy"] == np.__version__
    assert all(isinstance(v, str) and v for v in found.values())


def test_json_safe_and_write_json(tmp_path):
    meta = ImageMeta((0.5, 2.0), (1.0, -1.0), (1.0, 0.0, 0.0, 1.0), format="nrrd", extra={"dtype": np.dtype("uint8")})
    value = {"a": np.float32(1.5), "b": np.arange(3), "path": tmp_path, "meta": meta, "tags": {"y", "x"}}
    safe = json_safe(value)
    assert safe["meta"] == json_safe(meta.to_dict())
    assert safe["b"] == [0, 1, 2] and safe["path"] == str(tmp_path) and safe["tags"] == ["x", "y"]
    with pytest.raises(TypeError, match="object"):
        json_safe(object())
    target = write_json(tmp_path / "sub" / "record.json", value, indent=1)
    assert json.loads(target.read_text()) == json.loads(json.dumps(safe))
    assert target.read_text().startswith('{\n "a"')
    with pytest.raises(FileExistsError, match="overwrite"):
        write_json(target, {}, overwrite=False)


def test_atomic_write_turns_library_errors_into_one_line_and_cleans_up(tmp_path):
    target = prepare_target(tmp_path / "out.bin", overwrite=False)

    def broken(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise RuntimeError("encoder failed\nwith a second line")

    with pytest.raises(ValueError, match=r"cannot write .*out\.bin as a test file: with a second line"):
        atomic_write(target, broken, "a test file")
    assert list(tmp_path.iterdir()) == []
    atomic_write(target, lambda tmp: tmp.write_bytes(b"whole"), "a test file")
    assert target.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_sr_meta_keeps_the_field_of_view():
    meta = ImageMeta((2.0, 4.0), (10.0, 20.0), (1.0, 0.0, 0.0, 1.0), format="nifti", extra={"dtype": "uint8"})
    fine = sr_meta(meta, 2)
    assert fine.spacing == (1.0, 2.0)
    # first edge (origin - spacing / 2) is shared by both grids
    assert np.allclose(np.subtract(fine.origin, np.divide(fine.spacing, 2)),
                       np.subtract(meta.origin, np.divide(meta.spacing, 2)))
    assert fine.direction == meta.direction and fine.format == "nifti" and fine.extra == {"dtype": "uint8"}
    assert sr_meta(meta, 2, ndim=2) == fine
    assert sr_meta(meta, 2, ndim=3) == ImageMeta.default(3, format="nifti")


def test_ct_meta_uses_the_detector_spacing():
    meta = ImageMeta((0.5, 0.25), (1.0, 2.0), (1.0, 0.0, 0.0, 1.0), format="tiff",
                     extra={"dtype": "float32", "metadata": {"k": "v"}})
    assert ct_meta(meta, "skimage").spacing == (0.25, 0.25)
    assert ct_meta(meta, "torch").spacing == (0.5, 0.5)
    assert ct_meta(meta, "skimage").extra == {"dtype": "float32"}
    assert ct_meta(ImageMeta.default(3), "skimage") == ImageMeta.default(2)


def test_science_and_files_imports_stay_light():
    code = ("import sys, reconstruct.occupancy, reconstruct.fit, reconstruct.app, reconstruct.app.files; "
            "heavy = [m for m in ('SimpleITK', 'dask', 'distributed', 'napari') if m in sys.modules]; "
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
