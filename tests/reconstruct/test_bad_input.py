"""Bad and edge inputs, table-driven (issue 15): every row keeps its exit code, one line, its inputs and no leftovers.

Each command-line row runs ``nestnet ...`` in-process in a fresh copy of the same small inputs and
checks: the exit status; exactly one non-empty line on stderr (for a batch run with failed items: the
summary line and one line per failed item) naming the problem; every file that was there before is
byte-identical afterwards; and nothing new is left except the outputs the row expects (no partial
outputs, no temporary files). Rows that already worked are in the table too, so they stay working.
The Python API rows check the exception type, a one-line message, and that no network was built.
The Dask-process rows (interrupts, the embedded cluster's network, a worker lost) are in
``test_batch.py``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reconstruct.app.cli import main
from reconstruct.app.images import read_image, write_image
from reconstruct.metrics import psnr

SMALL = ["--model-kwargs", '{"hidden_channels": [16, 16]}', "--no-progress"]
SEQ = [*SMALL, "--scheduler", "sequential"]


# ------------------------------------------------------------------------------------------------ inputs


def _gradient(h: int = 16, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 11) % 97 / 96.0).astype(np.float32)


@pytest.fixture(scope="module")
def sources(tmp_path_factory, phantom_factory) -> Path:
    """The inputs every row starts from (copied fresh for each row)."""
    import trimesh
    from skimage.transform import radon

    d = tmp_path_factory.mktemp("sources")
    img = _gradient()
    np.save(d / "a.npy", img)
    u12 = np.rint(img * 4095).astype(np.uint16)  # 12-bit data stored as uint16
    np.save(d / "u12.npy", u12)
    np.save(d / "f12.npy", u12.astype(np.float32))  # the same values as floats
    np.save(d / "u12_hr.npy", np.kron(u12, np.ones((2, 2), np.uint16)))  # a 32 x 32 truth for 2x SR
    np.save(d / "frames12.npy", np.stack([u12[::2, ::2], u12[1::2, 1::2]]))
    np.save(d / "ref.npy", img)
    bad = img.copy()
    bad[2, 3] = np.nan
    np.save(d / "nan.npy", bad)
    np.save(d / "flat.npy", np.full((8, 8), 3.0, np.float32))
    theta = np.linspace(0.0, 180.0, 12, endpoint=False)
    sino = radon(phantom_factory(17).astype(np.float64), theta=theta, circle=True).astype(np.float32)
    np.save(d / "sino.npy", sino)  # detectors x angles (the skimage layout)
    np.save(d / "sino_t.npy", np.ascontiguousarray(sino.T))  # angles x detectors
    np.save(d / "ang.npy", theta)
    (d / "ang.json").write_text("\n".join(f"{t:g}" for t in theta) + "\n")  # an angles text file named .json
    np.save(d / "frames.npy", np.stack([img[::2, ::2], img[1::2, 1::2]]))
    np.save(d / "shifts.npy", np.array([[0.0, 0.0], [1.0, 1.0]]))
    np.save(d / "far.npy", np.array([[0.0, 0.0], [2e6, 0.0]]))
    np.save(d / "rot.npy", np.zeros(2))
    z, y, x = np.mgrid[0:12, 0:12, 0:12] - 5.5
    np.save(d / "ball.npy", (x**2 + y**2 + z**2 < 16).astype(np.uint8))
    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(d / "box.stl")
    (d / "text.npy").write_text("0 10 20\n30 40 50\n")  # a text file with a NumPy suffix
    np.save(d / "pickled.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    (d / "sub").mkdir()
    (d / "sub" / "keep.txt").write_text("a file, not a folder")
    (d / "sub" / "sino.json").write_text("\n".join(f"{t:g}" for t in theta) + "\n")  # angles named like a record
    # a MetaImage header whose data file lies beside it, under another stem
    write_image(d / "h.mhd", img)
    (d / "h.raw").rename(d / "d.raw")
    (d / "h.mhd").write_text((d / "h.mhd").read_text().replace("h.raw", "d.raw"))
    # a header that reads a data file outside its folder (a valid one: the flag must make it readable)
    (d / "ext").mkdir()
    write_image(d / "ext" / "x.mhd", img)
    (d / "items").mkdir()
    header = (d / "ext" / "x.mhd").read_text().replace("x.raw", "../ext/x.raw")
    (d / "items" / "far.mhd").write_text(header)
    (d / "items" / "m.csv").write_text("path\nfar.mhd\n")
    (d / "summary.csv").write_text("path\na.npy\n")  # a manifest named like the batch summary
    return d


def _snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _unwritable_dir(base: Path) -> str | None:
    """A folder this process cannot write to (a read-only one; /sys when running as root), or None."""
    d = base / "read-only"
    d.mkdir()
    d.chmod(0o555)
    for candidate in (d, Path("/sys"), Path("/proc")):
        try:
            fd, name = tempfile.mkstemp(dir=candidate)
        except OSError:
            return str(candidate)
        os.close(fd)
        os.unlink(name)
    return None


class _NotDask(threading.Thread):
    """A plain TCP service on 127.0.0.1 that answers like a web server: no Dask scheduler."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


# ------------------------------------------------------------------------------------------------ the table


@dataclasses.dataclass(frozen=True)
class Row:
    """One command line: ``argv`` (``{ro}``, ``{port}`` filled in), exit ``code``, ``match`` in the message.

    ``made``: files the row may leave (relative, only for rows that succeed or record failed items);
    ``check(folder)``: further checks of what it wrote.
    """

    id: str
    argv: tuple[str, ...]
    code: int
    match: str = ""
    made: tuple[str, ...] = ()
    check: Callable[[Path], None] | None = None


def _record(folder: Path, name: str) -> dict[str, Any]:
    return json.loads((folder / name).read_text())


def _scored_on_12_bits(stem: str, source: str, reference: str | None = None) -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        rec = _record(folder, f"{stem}.json")
        norm = rec["normalisation"]
        assert norm["method"] == "bit-depth" and norm["bits"] == 12 and norm["scale"] == 4095.0, norm
        assert norm["metric_data_range"] == 4095.0
        out, _ = read_image(folder / f"{stem}.npy")
        assert out.dtype == np.uint16 and out.shape == np.load(folder / (reference or source)).shape
    return check


def _same_fit_as_floats(folder: Path) -> None:
    u, f = _record(folder, "u12_fit.json"), _record(folder, "f12_fit.json")
    assert u["metrics"]["psnr"] == pytest.approx(f["metrics"]["psnr"], abs=1e-3)  # 12-bit ints fit like floats


def _declared(folder: Path) -> None:
    norm = _record(folder, "u12_fit.json")["normalisation"]
    assert norm["bits"] == 16 and norm["declared"] and norm["scale"] == 65535.0


def _batch_12_bits(folder: Path) -> None:
    rec = _record(folder / "bo", "u12.json")
    assert rec["status"] == "ok" and rec["normalisation"]["scale"] == 4095.0
    assert rec["normalisation"]["metric_data_range"] == 4095.0 and "psnr" in rec["metrics"]  # scored on itself


def _surface_and_record(folder: Path) -> None:
    rec = _record(folder, "box_occupancy.json")
    assert rec["surface_faces"] > 0 and (folder / "s.ply").stat().st_size > 0


def _failed_item(name: str, match: str, out: str = "bo") -> Callable[[Path], None]:
    def check(folder: Path) -> None:
        rec = _record(folder / out, f"{name}.json")
        assert rec["status"] == "failed" and match in rec["reason"] and "\n" not in rec["reason"]
    return check


def _external_read(folder: Path) -> None:
    rec = _record(folder / "bo", "far.json")
    assert rec["status"] == "ok", rec.get("reason")
    assert read_image(folder / "bo" / "far.mhd")[0].shape == (16, 16)


S = ("--steps", "1")
ROWS = [
    # 1. integer data normalised and scored by its own bit depth (all image tasks and batch)
    Row("u12-fit", ("fit-image", "u12.npy", "--steps", "2", *SMALL), 0, made=("u12_fit.npy", "u12_fit.json"),
        check=_scored_on_12_bits("u12_fit", "u12.npy")),
    Row("u12-denoise", ("denoise", "u12.npy", "--reference", "u12.npy", *S, *SMALL), 0,
        made=("u12_denoised.npy", "u12_denoised.json"), check=_scored_on_12_bits("u12_denoised", "u12.npy")),
    Row("u12-sr", ("sr", "u12.npy", "--scale", "2", "--reference", "u12_hr.npy", *S, *SMALL), 0,
        made=("u12_sr2x.npy", "u12_sr2x.json"), check=_scored_on_12_bits("u12_sr2x", "u12.npy", "u12_hr.npy")),
    Row("u12-misr", ("misr", "frames12.npy", "--shifts", "shifts.npy", "--rotations", "rot.npy", "--scale", "2",
                     "--reference", "u12.npy", *S, *SMALL), 0, made=("frames12_misr2x.npy", "frames12_misr2x.json"),
        check=_scored_on_12_bits("frames12_misr2x", "u12.npy")),
    Row("u12-declared-16-bits", ("fit-image", "u12.npy", "--bit-depth", "16", *S, *SMALL), 0,
        made=("u12_fit.npy", "u12_fit.json"), check=_declared),
    Row("u12-declared-too-few-bits", ("fit-image", "u12.npy", "--bit-depth", "8", *S, *SMALL), 2,
        "more than 8-bit data holds"),
    Row("u12-batch", ("batch", "fit-image", "u12.npy", "--out", "bo", "--steps", "2", *SEQ), 0,
        made=("bo/u12.npy", "bo/u12.json", "bo/summary.csv"), check=_batch_12_bits),
    # 3. layout, time budget, seed, MISR shifts
    Row("ct-torch-layout-on-skimage-sinogram", ("ct", "sino.npy", "--layout", "torch", *S, *SMALL), 2,
        "looks like detectors x angles"),
    Row("ct-torch-layout-right", ("ct", "sino_t.npy", "--layout", "torch", *S, *SMALL), 0,
        made=("sino_t_recon.npy", "sino_t_recon.json")),
    Row("ct-batch-torch-layout", ("batch", "ct", "sino.npy", "--out", "bo", "--layout", "torch", *S, *SEQ), 1,
        "looks like detectors x angles", made=("bo/sino.json", "bo/summary.csv"),
        check=_failed_item("sino", "looks like detectors x angles")),
    Row("time-budget-nan", ("fit-image", "a.npy", "--time-budget", "nan", *S, *SMALL), 2, "time_budget_s must be"),
    Row("seed-negative", ("fit-image", "a.npy", "--seed", "-1", *S, *SMALL), 2, "seed must be an integer in [0"),
    Row("seed-negative-pinn", ("pinn", "--seed", "-1", *S, *SMALL), 2, "seed must be an integer in [0"),
    Row("seed-negative-batch", ("batch", "denoise", "a.npy", "--out", "bo", "--seed", "-1", *SEQ), 126,
        "seed must be an integer in [0"),
    Row("misr-shift-2e6", ("misr", "frames.npy", "--shifts", "far.npy", "--rotations", "rot.npy", *S, *SMALL), 2,
        "outside the 32 x 32 image"),
    Row("misr-shifts-fine", ("misr", "frames.npy", "--shifts", "shifts.npy", "--rotations", "rot.npy", "--scale",
                             "2", *S, *SMALL), 0, made=("frames_misr2x.npy", "frames_misr2x.json")),
    # 4. every output checked before any work
    Row("out-in-read-only-folder", ("fit-image", "a.npy", "--out", "{ro}/x.npy", *S, *SMALL), 2, "not writable"),
    Row("out-under-a-file", ("fit-image", "a.npy", "--out", "sub/keep.txt/x.npy", *S, *SMALL), 2,
        "is a file, not a folder"),
    Row("out-unknown-format", ("fit-image", "a.npy", "--out", "x.stl", *S, *SMALL), 2, "unsupported file type"),
    Row("out-json", ("fit-image", "a.npy", "--out", "x.json", *S, *SMALL), 2, ".json is its record's"),
    Row("out-volume-as-png", ("occupancy", "ball.npy", "--out", "v.png", *S, *SMALL), 2, "PNG holds 2-D"),
    Row("out-exists", ("fit-image", "a.npy", "--out", "ref.npy", *S, *SMALL), 2, "pass --overwrite"),
    Row("out-new-folder", ("fit-image", "a.npy", "--out", "new/deeper/x.npy", *S, *SMALL), 0,
        made=("new/deeper/x.npy", "new/deeper/x.json")),
    Row("surface-xyz", ("occupancy", "ball.npy", "--surface", "s.xyz", *S, *SMALL), 2, "cannot write the surface"),
    Row("surface-missing-folder", ("occupancy", "ball.npy", "--surface", "nowhere/s.ply", *S, *SMALL), 2,
        "does not exist"),
    Row("surface-is-an-input", ("occupancy", "box.stl", "--resolution", "8", "--surface", "box.stl", "--overwrite", *S,
                                *SMALL), 2, "is the input"),
    Row("level-2", ("occupancy", "ball.npy", "--surface", "s.ply", "--level", "2", *S, *SMALL), 2,
        "level must be a finite number in (0, 1)"),
    Row("level-0", ("occupancy", "ball.npy", "--surface", "s.ply", "--level", "0", *S, *SMALL), 2,
        "level must be a finite number in (0, 1)"),
    Row("surface-ok", ("occupancy", "box.stl", "--resolution", "8", "--surface", "s.ply", "--steps", "3", "--lr",
                       "0.05", *SMALL), 0, made=("box_occupancy.npy", "box_occupancy.json", "s.ply"),
        check=_surface_and_record),
    Row("batch-out-read-only", ("batch", "denoise", "a.npy", "--out", "{ro}/bo", *S, *SEQ), 126, "cannot"),
    Row("batch-out-is-a-file", ("batch", "denoise", "a.npy", "--out", "sub/keep.txt", *S, *SEQ), 126, "is a file"),
    # 5. no output equals or replaces an input
    Row("out-is-angles", ("ct", "sino.npy", "--angles", "ang.npy", "--out", "ang.npy", "--overwrite", *S, *SMALL), 2,
        "is the input"),
    Row("record-is-angles", ("ct", "sino.npy", "--angles", "ang.json", "--out", "ang.npy", "--overwrite", *S,
                             *SMALL), 2, "is the input"),
    Row("out-is-shifts", ("misr", "frames.npy", "--shifts", "shifts.npy", "--rotations", "rot.npy", "--out",
                          "shifts.npy", "--overwrite", *S, *SMALL), 2, "is the input"),
    Row("out-is-rotations", ("misr", "frames.npy", "--shifts", "shifts.npy", "--rotations", "rot.npy", "--out",
                             "rot.npy", "--overwrite", *S, *SMALL), 2, "is the input"),
    Row("out-is-reference", ("denoise", "a.npy", "--reference", "ref.npy", "--out", "ref.npy", "--overwrite", *S,
                             *SMALL), 2, "is the input"),
    Row("out-is-main", ("denoise", "a.npy", "--out", "a.npy", "--overwrite", *S, *SMALL), 2, "is the input"),
    Row("out-data-file-is-input", ("fit-image", "h.mhd", "--out", "d.mhd", "--overwrite", *S, *SMALL), 2,
        "would overwrite an input"),
    Row("batch-summary-is-manifest", ("batch", "denoise", "summary.csv", "--out", ".", *S, *SEQ), 126,
        "would overwrite an input"),
    Row("batch-record-is-angles", ("batch", "ct", "sino.npy", "--angles", "sub/sino.json", "--out", "sub", *S,
                                   *SEQ), 126, "would overwrite an input"),
    Row("batch-out-is-input", ("batch", "denoise", "a.npy", "--out", ".", *S, *SEQ), 126, "would overwrite an input"),
    # 6. memory estimated before allocating
    Row("sr-scale-20000", ("sr", "a.npy", "--scale", "20000", *S, *SMALL), 2, "output 320000 x 320000 pixels"),
    Row("ct-output-size-100000", ("ct", "sino.npy", "--output-size", "100000", *S, *SMALL), 2,
        "output 100000 x 100000 pixels"),
    Row("occupancy-resolution-2000", ("occupancy", "box.stl", "--resolution", "2000", *S, *SMALL), 2,
        "volume 2002 x"),
    Row("pinn-200000", ("pinn", "--nx", "200000", "--nt", "200000", *S, *SMALL), 2, "grid 200000 x 200000 points"),
    Row("huge-hidden-widths", ("fit-image", "a.npy", "--model-kwargs", '{"hidden_channels": [100000, 100000]}',
                               "--no-progress", *S), 2, "network 10,"),
    Row("batch-sr-scale-20000", ("batch", "sr", "a.npy", "--out", "bo", "--scale", "20000", *S, *SEQ), 1,
        "the run needs about", made=("bo/a.json", "bo/summary.csv"), check=_failed_item("a", "is available")),
    # 8. a service at the scheduler address that is not Dask
    Row("scheduler-not-dask", ("batch", "denoise", "a.npy", "--out", "bo", "--scheduler",
                               "tcp://127.0.0.1:{port}", *S, *SMALL), 126, "cannot connect to the Dask scheduler"),
    Row("scheduler-bad-form", ("batch", "denoise", "a.npy", "--out", "bo", "--scheduler", "threads", *S, *SMALL),
        126, "scheduler 'threads'"),
    # 9. files that are not what their name says; data files outside their header's folder
    Row("text-named-npy", ("fit-image", "text.npy", *S, *SMALL), 2, "is not a NumPy array file"),
    Row("text-named-npy-angles", ("ct", "sino.npy", "--angles", "text.npy", *S, *SMALL), 2,
        "is not a NumPy array file"),
    Row("pickled-npy", ("fit-image", "pickled.npy", *S, *SMALL), 2, "never loaded"),
    Row("mhd-data-outside-batch", ("batch", "fit-image", "items/m.csv", "--out", "bo", *S, *SEQ), 1,
        "outside its folder", made=("bo/far.json", "bo/summary.csv"), check=_failed_item("far", "--allow-external")),
    Row("mhd-data-outside-allowed", ("batch", "fit-image", "items/m.csv", "--out", "bo", "--allow-external-data", *S,
                                     *SEQ), 0, made=("bo/far.mhd", "bo/far.raw", "bo/far.json", "bo/summary.csv"),
        check=_external_read),
    Row("mhd-data-beside-cli", ("fit-image", "h.mhd", *S, *SMALL), 0, made=("h_fit.mhd", "h_fit.raw", "h_fit.json")),
    # what already worked, kept working
    Row("nan", ("fit-image", "nan.npy", *S, *SMALL), 2, "NaN"),
    Row("constant", ("fit-image", "flat.npy", *S, *SMALL), 2, "constant"),
    Row("missing", ("fit-image", "nope.npy", *S, *SMALL), 2, "does not exist"),
    Row("angle-mismatch", ("ct", "sino.npy", "--angles", "0:180:7", *S, *SMALL), 2, "12 angle columns but 7"),
    Row("unknown-option-value", ("fit-image", "a.npy", "--model", "resnet", *S), 2, "invalid choice"),
    Row("batch-missing-input", ("batch", "denoise", "nope.npy", "--out", "bo", *SEQ), 126, "no such file"),
    Row("fit-ok", ("fit-image", "a.npy", "--steps", "2", *SMALL), 0, made=("a_fit.npy", "a_fit.json")),
]
ROWS.insert(1, Row("u12-like-floats", ("fit-image", "u12.npy", "--steps", "2", *SMALL), 0,
                   made=("u12_fit.npy", "u12_fit.json", "f12_fit.npy", "f12_fit.json"), check=_same_fit_as_floats))


@pytest.fixture(scope="module")
def not_dask():
    server = _NotDask()
    server.start()
    yield server
    server.close()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_command_line_row(row: Row, sources, tmp_path, monkeypatch, capsys, not_dask):
    work = tmp_path / "work"
    shutil.copytree(sources, work)
    monkeypatch.chdir(work)
    ro = _unwritable_dir(tmp_path) if "{ro}" in " ".join(row.argv) else ""
    if ro is None:
        pytest.skip("no unwritable folder here")
    argv = [a.replace("{ro}", ro).replace("{port}", str(not_dask.port)) for a in row.argv]
    before = _snapshot(work)
    folders = sorted(p for p in work.rglob("*") if p.is_dir())
    code = main(argv)
    if row.id == "u12-like-floats":  # the same values as floats, for the comparison
        assert main(["fit-image", "f12.npy", "--steps", "2", *SMALL]) == 0
    out, err = capsys.readouterr()
    assert code == row.code, f"exit {code}, stderr: {err}"
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if row.code in (2, 126):
        assert len(lines) == 1, err
        assert lines[0].startswith("nestnet") and ": error: " in lines[0], lines[0]
        assert row.match in lines[0], lines[0]
    elif row.code == 1:  # a batch run with a failed item: the summary and one line for the item
        assert len(lines) == 2 and lines[1].startswith("  failed ") and row.match in lines[1], err
    elif row.argv[0] == "batch":  # the summary line
        assert len(lines) == 1 and lines[0].startswith(f"nestnet batch {row.argv[1]}: ") and " 0 failed" in err, err
    else:
        assert not lines, err
    after = _snapshot(work)
    changed = sorted(k for k in before if after.get(k) != before[k])
    assert not changed, f"inputs modified: {changed}"
    new = sorted(set(after) - set(before))
    assert new == sorted(row.made), f"left behind: {new}"
    assert not [p for p in work.rglob("*") if ".tmp-" in p.name]
    if row.code in (2, 126):  # no folder was left either
        assert sorted(p for p in work.rglob("*") if p.is_dir()) == folders
    if row.check is not None:
        row.check(work)


# ------------------------------------------------------------------------------------------------ Python API

GOOD = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
U12 = (GOOD * 4095).astype(np.uint16)


@pytest.fixture
def no_network(monkeypatch):
    """Fail the row if a task builds a network or starts fitting: validation comes first."""

    def forbidden(*args, **kwargs):
        raise AssertionError("a network was built before the input was validated")

    from reconstruct.tasks import runner

    monkeypatch.setattr(runner, "fit", forbidden)
    monkeypatch.setattr(runner, "get_network", forbidden)


def _api_rows() -> list[tuple[str, Callable[[], Any], type[Exception], str]]:
    from reconstruct.fit import fit
    from reconstruct.operators import Identity
    from reconstruct.tasks import (
        denoise,
        fit_image,
        fit_occupancy,
        simulate_misr_frames,
        solve_convection,
        super_resolve,
        super_resolve_multi,
    )
    from reconstruct.tasks.common import check_sinogram_layout

    frames = np.stack([GOOD[::2, ::2], GOOD[1::2, 1::2]])
    ball = np.zeros((6, 6, 6), bool)
    ball[2:4, 2:4, 2:4] = True

    def loop(**kwargs):
        import torch

        return fit(torch.nn.Linear(2, 1), Identity((8, 8), 1), GOOD[..., None], steps=1, device="cpu", **kwargs)

    sino = np.outer(np.hanning(9) + 0.1, np.ones(6))  # every column (projection) integrates the same total
    rows = [
        ("fit-loop-budget-nan", lambda: loop(time_budget_s=float("nan")), ValueError, "time_budget_s"),
        ("fit-loop-budget-negative", lambda: loop(time_budget_s=-1.0), ValueError, "time_budget_s"),
        ("fit-loop-seed-negative", lambda: loop(seed=-1), ValueError, "seed"),
        ("misr-shift-2e6", lambda: super_resolve_multi(frames, shifts=[[0, 0], [2e6, 0]], rotations=[0, 0], scale=2),
         ValueError, "outside the 8 x 8 image"),
        ("misr-shift-just-outside", lambda: super_resolve_multi(frames, shifts=[[0, 0], [0, -8]], rotations=[0, 0],
                                                                scale=2), ValueError, "outside the 8 x 8 image"),
        ("simulate-shift-2e6", lambda: simulate_misr_frames(GOOD, [[2e6, 0]], [0], scale=2), ValueError, "outside"),
        ("bit-depth-too-small", lambda: fit_image(U12, bit_depth=8), ValueError, "more than 8-bit data holds"),
        ("bit-depth-negative-data", lambda: fit_image(U12.astype(np.int16) - 5, bit_depth=12), ValueError,
         "negative values"),
        ("bit-depth-out-of-range", lambda: fit_image(U12, bit_depth=0), ValueError, "bit_depth must be"),
        ("bit-depth-float", lambda: fit_image(U12, bit_depth=12.5), TypeError, "bit_depth must be"),
        ("layout-swapped", lambda: check_sinogram_layout(sino, "torch"), ValueError, "looks like detectors x angles"),
        ("layout-swapped-t", lambda: check_sinogram_layout(sino.T, "skimage"), ValueError,
         "looks like angles x detectors"),
    ]
    for name, call in (("fit-image", lambda **k: fit_image(GOOD, **k)), ("denoise", lambda **k: denoise(GOOD, **k)),
                       ("sr", lambda **k: super_resolve(GOOD, **k)),
                       ("misr", lambda **k: super_resolve_multi(frames, shifts=[[0, 0], [1, 1]], rotations=[0, 0],
                                                                **k)),
                       ("occupancy", lambda **k: fit_occupancy(ball, **k)),
                       ("pinn", lambda **k: solve_convection(1.0, **k))):
        rows.append((f"{name}-seed-negative", lambda call=call: call(seed=-1), ValueError, "seed must be"))
        rows.append((f"{name}-budget-nan", lambda call=call: call(time_budget_s=float("nan")), ValueError,
                     "time_budget_s must be"))
    return rows


API_ROWS = _api_rows()


@pytest.mark.parametrize(("name", "call", "error", "match"), API_ROWS, ids=[r[0] for r in API_ROWS])
def test_api_row(name, call, error, match, no_network):
    keep = (GOOD.copy(), U12.copy())
    with pytest.raises(error, match=match.replace("(", r"\(").replace(")", r"\)")) as info:
        call()
    assert "\n" not in str(info.value)
    np.testing.assert_array_equal(GOOD, keep[0])
    np.testing.assert_array_equal(U12, keep[1])


@pytest.mark.parametrize(("data", "bit_depth", "method", "scale"), [
    (np.array([0, 4095], np.uint16), None, "bit-depth", 4095.0),  # 12-bit data in uint16: 4,095, not 65,535
    (np.array([0, 4000], np.uint16), None, "bit-depth", 4095.0),
    (np.array([0, 65535], np.uint16), None, "bit-depth", 65535.0),
    (np.array([3, 250], np.uint8), None, "bit-depth", 255.0),  # 8-bit: 255 as before
    (np.array([0, 15], np.uint8), None, "bit-depth", 255.0),  # at least 8 bits
    (np.array([0, 1000], np.uint16), 12, "bit-depth", 4095.0),  # a dark 12-bit frame, declared
    (np.array([-5, 100], np.int16), None, "min-max", 105.0),
    (np.array([False, True]), None, "dtype-range", 1.0),
    (np.array([0.0, 0.5], np.float32), None, "identity", 1.0),
    (np.array([10.0, 30.0], np.float32), None, "min-max", 20.0),
], ids=["u12", "u12-partial", "u16", "u8", "u8-dark", "declared", "int-negative", "bool", "float01", "float"])
def test_normalisation_rule(data, bit_depth, method, scale):
    from reconstruct.tasks.common import normalisation

    norm = normalisation(data, "x", bit_depth=bit_depth)
    assert norm.method == method and norm.scale == scale


def test_12_bit_data_is_scored_on_its_range():
    from reconstruct.tasks import fit_image

    image = np.rint(GOOD * 4095).astype(np.uint16)
    result = fit_image(image, steps=2, model_kwargs={"hidden_channels": [16, 16]}, device="cpu")
    assert result.extras["normalisation"]["metric_data_range"] == 4095.0
    assert result.metrics["psnr"] == pytest.approx(psnr(result.output, image.astype(np.float64), 4095.0), abs=1e-3)
    floats = fit_image(image.astype(np.float32), steps=2, model_kwargs={"hidden_channels": [16, 16]}, device="cpu")
    np.testing.assert_allclose(result.output, floats.output, rtol=1e-4, atol=0.5)  # the same fit as floats


def test_a_file_s_declared_bit_depth_is_used():
    from reconstruct.app.commands import declared_bits
    from reconstruct.app.meta import ImageMeta

    meta = ImageMeta.default(2, format="tiff")
    meta.extra = {"dtype": "uint16", "bit_depth": 12}
    assert declared_bits({}, meta) == {"bit_depth": 12}
    assert declared_bits({"bit_depth": 16}, meta) == {}  # what the user gives wins
    meta.extra = {"dtype": "uint16"}
    assert declared_bits({}, meta) == {}


def test_memory_estimate_passes_ordinary_runs_and_names_what_it_refuses(monkeypatch):
    from reconstruct.app import memory
    from reconstruct.tasks import SPECS

    for name, shape, values in (("fit_image", (512, 512), {}), ("ct_reconstruct", (256, 180), {}),
                                ("fit_occupancy", (66, 66, 66), {}), ("solve_convection", None, {}),
                                ("super_resolve", (128, 128), {"scale": 4})):
        memory.check_memory(memory.run_estimate(SPECS[name], shape, {"device": "cpu", **values}))
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": (1 << 20, None))  # 1 MiB left
    with pytest.raises(memory.MemoryLimit, match=r"image 64 x 64: the run needs about .* but 1\.0 MiB is available"):
        memory.check_memory(memory.run_estimate(SPECS["fit_image"], (64, 64), {"device": "cpu"}))
    monkeypatch.setenv("NESTNET_SKIP_MEMORY_CHECK", "1")
    memory.check_memory(memory.run_estimate(SPECS["fit_image"], (64, 64), {"device": "cpu"}))
