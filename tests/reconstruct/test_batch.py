"""Batch runner: inputs, parameters, resume, fault isolation, and the Dask paths with real processes."""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from reconstruct.batch import (
    BATCH_TASKS,
    SUMMARY_NAME,
    BatchItem,
    BatchSummary,
    ItemResult,
    add_batch_parser,
    collect_items,
    param_hash,
    parse_angles,
    run_batch,
    write_phantom_sinograms,
)
from reconstruct.io import ImageMeta, read_image, write_image
from reconstruct.metrics import psnr
from reconstruct.tasks import SPECS, Param, get_spec

ROOT = Path(__file__).resolve().parents[2]

# tiny fits: 32 x 32 phantoms and a small network, about a second per item on one core (22.9-25.5 dB)
FAST = {"steps": 100, "model_kwargs": {"hidden_channels": [64, 64]}, "device": "cpu"}
PIXEL = 0.7
PSNR_BAR = 20.0  # dB against the phantom: a clear reconstruction, far above a wrong, transposed or empty one


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread here, as on the batch workers: the 2 shared cores are oversubscribed otherwise."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _corrupt(path: Path) -> Path:
    path.write_bytes(b"\x5c\x01\x00\x00 this is not an image" + bytes(range(256)) * 4)
    return path


@pytest.fixture(scope="module")
def ct_data(tmp_path_factory) -> Path:
    """Four 32 x 32 phantom sinograms (45 angles, detector bins 0.7 wide), their phantoms and a manifest."""
    folder = tmp_path_factory.mktemp("ct_data")
    write_phantom_sinograms(folder, count=4, size=32, n_angles=45, pixel_size=PIXEL, seed=1)
    return folder


def _check_ct_output(out: Path, name: str, reference: Path) -> float:
    arr, meta = read_image(out / f"{name}.nii.gz")
    ref, _ = read_image(reference)
    assert arr.shape == ref.shape
    assert meta.spacing == pytest.approx((PIXEL, PIXEL), rel=1e-5)
    value = psnr(arr, ref, data_range=1.0)
    assert value > PSNR_BAR, f"{name}: PSNR {value:.1f} dB"
    return value


def _manifest(folder: Path, rows: list[tuple[str, str, str]], name: str = "run.csv") -> Path:
    text = "path,angles,reference\n" + "".join(f"{p},{a},{r}\n" for p, a, r in rows)
    path = folder / name
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# inputs and parameters (no fitting)
# ------------------------------------------------------------------------------------------------


def test_parse_angles_forms(tmp_path):
    np.testing.assert_allclose(parse_angles("0:180:4"), [0.0, 45.0, 90.0, 135.0])
    (tmp_path / "a.txt").write_text("0, 10\n20 30\n")
    np.testing.assert_allclose(parse_angles("a.txt", base_dir=tmp_path), [0, 10, 20, 30])
    np.save(tmp_path / "b.npy", np.array([1.0, 2.0]))
    np.testing.assert_allclose(parse_angles(tmp_path / "b.npy"), [1.0, 2.0])
    np.testing.assert_allclose(parse_angles([5, 6]), [5.0, 6.0])
    assert parse_angles(None) is None
    for bad in ("0:180:x", "0:180:0", "nope.txt"):
        with pytest.raises(ValueError, match="angles"):
            parse_angles(bad)
    with pytest.raises(ValueError, match="finite"):
        parse_angles([0.0, float("nan")])


def test_collect_folders_globs_manifest(tmp_path):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        write_image(tmp_path / sub / "scan.nii.gz", np.zeros((4, 4), np.float32))
    write_image(tmp_path / "a" / "other.mha", np.zeros((4, 4), np.float32))
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "a" / ".scan.tmp-x.nii.gz").write_bytes(b"half")  # a temporary file: never an item

    items = collect_items([tmp_path / "a"])
    assert [Path(i.path).name for i in items] == ["other.mha", "scan.nii.gz"]
    assert [i.name for i in items] == ["other", "scan"]

    # same stem in two folders: names from the path below the common folder
    items = collect_items([str(tmp_path / "*" / "scan.nii.gz")])
    assert sorted(i.name for i in items) == ["a__scan", "b__scan"]

    # recursive pattern; the output folder is never read back as input
    out = tmp_path / "out"
    write_image(out / "scan.nii.gz", np.zeros((4, 4), np.float32))
    items = collect_items([str(tmp_path / "**" / "*.nii.gz")], exclude=out)
    assert all(not Path(i.path).is_relative_to(out) for i in items) and len(items) == 2

    # a manifest: paths relative to it, per-item options, a file listed twice kept once
    (tmp_path / "angles.txt").write_text("0 90\n")
    manifest = _manifest(tmp_path, [("a/scan.nii.gz", "angles.txt", ""), ("a/other.mha", "0:180:9", "b/scan.nii.gz")])
    items = collect_items([manifest, tmp_path / "a" / "scan.nii.gz"])
    assert len(items) == 2
    assert items[0].angles == str(tmp_path / "angles.txt") and items[0].reference is None
    assert items[1].angles == "0:180:9" and items[1].reference == str(tmp_path / "b" / "scan.nii.gz")
    assert items[1].inputs == {"angles": "0:180:9"} and items[1].params == {}

    with pytest.raises(FileNotFoundError, match="no such file"):
        collect_items([tmp_path / "missing.nii.gz"])
    with pytest.raises(ValueError, match="matched no input files"):
        collect_items([str(tmp_path / "*.nrrd")])
    (tmp_path / "bad.csv").write_text("angles,steps\n0:1:1,3\n")
    with pytest.raises(ValueError, match="no 'path' column"):
        collect_items([tmp_path / "bad.csv"])
    (tmp_path / "odd.csv").write_text("path,file\nx.nii.gz,y\n")
    with pytest.raises(ValueError, match="unknown columns.*'file'"):
        collect_items([tmp_path / "odd.csv"])
    # a task's manifest: its columns only (scale is not a CT parameter), options by name or flag
    (tmp_path / "sr.csv").write_text("path,scale\na/scan.nii.gz,2\n")
    with pytest.raises(ValueError, match="unknown columns.*'scale'"):
        collect_items([tmp_path / "sr.csv"], task="ct")
    assert collect_items([tmp_path / "sr.csv"], task="sr")[0].params == {"scale": "2"}
    (tmp_path / "ct.csv").write_text("path,filter,Tv-Weight,name\na/scan.nii.gz,hann,0,first\n")
    (item,) = collect_items([tmp_path / "ct.csv"], task="ct")
    assert item.name == "first" and item.params == {"filter_name": "hann", "tv_weight": "0"}


def test_bad_run_arguments_fail_before_anything_runs(tmp_path, ct_data):
    with pytest.raises(ValueError, match="unknown batch task"):
        run_batch("segment", [ct_data / "sino_000.nii.gz"], tmp_path / "o1")
    with pytest.raises(TypeError, match="unknown parameters.*scale"):
        run_batch("ct", [ct_data / "sino_000.nii.gz"], tmp_path / "o2", params={"scale": 2})
    with pytest.raises(ValueError, match="model must be one of"):
        run_batch("ct", [ct_data / "sino_000.nii.gz"], tmp_path / "o3", params={"model": "resnet"})
    with pytest.raises(ValueError, match="steps"):
        run_batch("ct", [ct_data / "sino_000.nii.gz"], tmp_path / "o4", params={"steps": 0})
    # validated by the spec: the same one-line messages as the task functions
    for bad, message in (({"tv_weight": -1.0}, "tv_weight must be"), ({"data_filter": "box"}, "data_filter must be"),
                         ({"circle": "maybe"}, "circle must be"), ({"angles": "0:180:x"}, "start:stop:count"),
                         ({"model_kwargs": {"width": 3}}, "has no argument 'width'")):
        with pytest.raises((TypeError, ValueError), match=message):
            run_batch("ct", [ct_data / "sino_000.nii.gz"], tmp_path / "o4", params=bad)
    with pytest.raises(ValueError, match="inside the input"):
        run_batch("ct", [ct_data], ct_data / "recon")
    with pytest.raises(ValueError, match="scheduler"):
        run_batch("ct", [ct_data / "sino_000.nii.gz"], tmp_path / "o5", scheduler="threads")
    # an output that would replace its own input
    with pytest.raises(ValueError, match="overwrite an input"):
        run_batch("ct", [ct_data / "sino_000.nii.gz"], ct_data, params=FAST, scheduler="sequential")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 6))


def test_param_hash_tracks_parameters_and_input(tmp_path):
    path = tmp_path / "x.nii.gz"
    write_image(path, np.zeros((4, 4), np.float32))
    item = BatchItem(str(path), "x")
    base = param_hash("ct", {"steps": 10, "device": "cpu"}, item)
    assert base == param_hash("ct", {"steps": 10, "device": "cuda"}, item)  # where it runs does not matter
    assert base != param_hash("ct", {"steps": 11, "device": "cpu"}, item)
    assert base != param_hash("ct", {"steps": 10}, BatchItem(str(path), "x", inputs={"angles": "0:180:4"}))
    # the values an item runs with decide, not where they were given: run value, item override or default
    override = BatchItem(str(path), "x", params={"steps": "11"})
    assert param_hash("ct", {"steps": 10}, override) == param_hash("ct", {"steps": 11}, item)
    assert param_hash("ct", {}, item) == param_hash("ct", {"tv_weight": 1e-3, "steps": 300}, item)
    assert param_hash("ct", {}, item) != param_hash("ct", {"data_filter": None}, item)
    os.utime(path, ns=(1, 1))  # the input changed
    assert base != param_hash("ct", {"steps": 10, "device": "cpu"}, item)


def test_exit_code_counts_failures_capped():
    def summary(n_failed: int) -> BatchSummary:
        items = [ItemResult(f"i{k}", "x", "failed") for k in range(n_failed)] + [ItemResult("ok", "y", "ok")]
        return BatchSummary("ct", Path("."), Path("s.csv"), items, 1.0, "sequential")

    assert summary(0).exit_code == 0
    assert summary(3).exit_code == 3
    assert summary(300).exit_code == 125


def test_cli_parser_and_usage_errors(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="nestnet")
    sub = parser.add_subparsers(dest="command")
    batch_parser = add_batch_parser(sub)
    assert isinstance(batch_parser, argparse.ArgumentParser)
    args = parser.parse_args(["batch", "ct", "a.nii.gz", "b/", "--out", "o", "--angles", "0:180:45", "--steps", "7",
                              "--scheduler", "sequential", "--model-kwargs", '{"hidden_channels": [8, 8]}'])
    assert args.func.__name__ == "run_batch_command" and args.task == "ct"
    assert args.inputs == ["a.nii.gz", "b/"] and args.steps == 7 and args.model_kwargs == {"hidden_channels": [8, 8]}
    assert not hasattr(args, "tv_weight")  # not given: the task's default
    args = parser.parse_args(["batch", "ct", "a.nii.gz", "--out", "o", "--data-filter", "none", "--no-circle",
                              "--filter", "hann", "--time-budget", "5"])
    assert args.data_filter is None and args.circle is False and args.filter_name == "hann"
    assert args.time_budget_s == 5.0
    # usage errors are not "2 items failed": a missing --out, an option of another task, a bad value or task
    for argv in (["batch", "ct", "a.nii.gz"], ["batch", "denoise", "a.png", "--out", "o", "--angles", "0:1:1"],
                 ["batch", "ct", "a.nii.gz", "--out", "o", "--tv-weight", "-1"],
                 ["batch", "ct", "a.nii.gz", "--out", "o", "--layout", "matlab"],
                 ["batch", "segment", "a.png", "--out", "o"], ["batch"]):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        assert exc.value.code == 126, argv
    assert "tv_weight must be a finite number in [0, inf]" in capsys.readouterr().err
    # a missing input: the run cannot start
    args = parser.parse_args(["batch", "ct", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "o")])
    assert args.func(args) == 126
    assert "no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# sequential runs: outputs, records, summary, faults, resume
# ------------------------------------------------------------------------------------------------


def test_sequential_run_resume_and_faults(tmp_path, ct_data):
    # one item acquired over other angles, given per item in the manifest (an angles file)
    phantom, _ = read_image(ct_data / "phantom_002.nii.gz")
    from skimage.transform import radon

    theta = np.linspace(0.0, 160.0, 30)
    np.savetxt(tmp_path / "item_angles.txt", theta)
    write_image(tmp_path / "odd.nii.gz", radon(phantom, theta=theta, circle=True).astype(np.float32),
                read_image(ct_data / "sino_002.nii.gz")[1])
    _corrupt(tmp_path / "broken.nii.gz")
    manifest = _manifest(tmp_path, [
        (str(ct_data / "sino_000.nii.gz"), "0:180:45", str(ct_data / "phantom_000.nii.gz")),
        ("odd.nii.gz", "item_angles.txt", str(ct_data / "phantom_002.nii.gz")),
        ("broken.nii.gz", "", ""),
    ])
    out = tmp_path / "out"
    summary = run_batch("ct", [manifest], out, params=FAST, scheduler="sequential", progress=False)

    assert [r.status for r in summary.items] == ["ok", "ok", "failed"]
    assert summary.exit_code == 1
    _check_ct_output(out, "sino_000", ct_data / "phantom_000.nii.gz")
    _check_ct_output(out, "odd", ct_data / "phantom_002.nii.gz")
    broken = summary.items[2]
    assert "broken.nii.gz" in broken.reason and "\n" not in broken.reason
    assert not (out / "broken.nii.gz").exists()
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]

    record = json.loads((out / "sino_000.json").read_text())
    assert record["status"] == "ok" and record["command"] == "ct" and record["task"] == "ct_reconstruct"
    assert record["parameters"]["steps"] == FAST["steps"] and record["inputs"]["angles"] == "0:180:45"
    # every parameter the task ran with, defaults included (the spec's, not a copy of them)
    spec = get_spec("ct")
    assert record["parameters"]["tv_weight"] == spec.param("tv_weight").default == 1e-3
    assert record["parameters"]["data_filter"] == spec.param("data_filter").default == "ramp"
    assert {p.name for p in spec.params} <= set(record["parameters"])
    assert record["parameters"]["angles_deg"] == pytest.approx(np.linspace(0, 180, 45, endpoint=False).tolist())
    assert set(record["versions"]) >= {"torch", "monai", "napari-nestnet"}
    assert record["metrics"]["psnr"] > PSNR_BAR and record["seconds"] > 0 and record["wall_seconds"] > 0
    assert record["baselines"]["fbp"]["psnr"] > 0 and record["best"]["oracle"] is True
    assert record["input"]["path"] == str(ct_data / "sino_000.nii.gz") and record["input"]["size"] > 0
    assert record["record_version"] >= 2 and record["param_hash"] == summary.items[0].param_hash
    assert record["output_meta"]["spacing"] == pytest.approx([PIXEL, PIXEL], rel=1e-5)
    odd = json.loads((out / "odd.json").read_text())
    assert odd["inputs"]["angles"] == str(tmp_path / "item_angles.txt")
    failed = json.loads((out / "broken.json").read_text())
    assert failed["status"] == "failed" and failed["reason"] == broken.reason

    with open(out / SUMMARY_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["name"] for r in rows] == ["sino_000", "odd", "broken"]
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert float(rows[0]["psnr"]) == pytest.approx(record["metrics"]["psnr"], rel=1e-4)

    # resume: nothing recomputed, nothing rewritten; the failed item is tried again
    stamp = (out / "sino_000.nii.gz").stat().st_mtime_ns
    again = run_batch("ct", [manifest], out, params=FAST, scheduler="sequential", progress=False)
    assert [r.status for r in again.items] == ["skipped", "skipped", "failed"]
    assert (out / "sino_000.nii.gz").stat().st_mtime_ns == stamp
    assert again.items[0].metrics["psnr"] == pytest.approx(record["metrics"]["psnr"])

    # a changed parameter recomputes
    changed = run_batch("ct", [manifest], out, params={**FAST, "steps": FAST["steps"] + 1},
                        scheduler="sequential", progress=False)
    assert [r.status for r in changed.items] == ["ok", "ok", "failed"]
    assert json.loads((out / "sino_000.json").read_text())["parameters"]["steps"] == FAST["steps"] + 1


def test_bad_item_contents_are_isolated(tmp_path, ct_data):
    """Readable files that are not valid items: wrong rank, wrong angle count, a bad per-item angles spec."""
    write_image(tmp_path / "volume.nii.gz", np.zeros((3, 8, 8), np.float32))
    manifest = _manifest(tmp_path, [
        ("volume.nii.gz", "", ""),
        (str(ct_data / "sino_001.nii.gz"), "0:180:44", ""),  # 45 projections in the file
        (str(ct_data / "sino_003.nii.gz"), "0:180:zero", ""),
    ])
    summary = run_batch("ct", [manifest], tmp_path / "out", params=FAST, scheduler="sequential", progress=False)
    reasons = [r.reason for r in summary.items]
    assert [r.status for r in summary.items] == ["failed"] * 3 and summary.exit_code == 3
    assert "2-D" in reasons[0]
    assert "45" in reasons[1] and "44" in reasons[1]
    assert "start:stop:count" in reasons[2]
    assert all("\n" not in r and "Traceback" not in r for r in reasons)


def test_manifest_overrides_are_parsed_and_validated_per_item(tmp_path, ct_data):
    """Any batch parameter may be a manifest column: parsed by the spec per item; a bad value fails that item."""
    text = ("path,angles,steps,tv_weight,data_filter,filter\n"
            f"{ct_data / 'sino_000.nii.gz'},0:180:45,3,0,none,hann\n"
            f"{ct_data / 'sino_001.nii.gz'},0:180:45,,,,\n"
            f"{ct_data / 'sino_002.nii.gz'},0:180:45,2,-1,,\n")
    (tmp_path / "m.csv").write_text(text)
    out = tmp_path / "out"
    summary = run_batch("ct", [tmp_path / "m.csv"], out, params={**FAST, "steps": 2}, scheduler="sequential",
                        progress=False)
    assert [r.status for r in summary.items] == ["ok", "ok", "failed"]
    assert "tv_weight must be" in summary.items[2].reason
    first, second = (json.loads((out / f"sino_00{i}.json").read_text())["parameters"] for i in (0, 1))
    assert (first["steps"], first["tv_weight"], first["data_filter"], first["filter_name"]) == (3, 0.0, None, "hann")
    assert (second["steps"], second["tv_weight"], second["data_filter"], second["filter_name"]) == (2, 1e-3, "ramp",
                                                                                                    "ramp")
    assert json.loads((out / "sino_000.json").read_text())["overrides"]["tv_weight"] == "0"


def test_help_of_a_task_lists_its_spec_options(capsys):
    parser = argparse.ArgumentParser(prog="nestnet")
    add_batch_parser(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["batch", "ct", "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    tv = get_spec("ct").param("tv_weight")
    assert f"--tv-weight TV_WEIGHT {tv.help} (default: 0.001)" in text  # the value the task applies
    assert "--data-filter {ramp,shepp-logan,cosine,hamming,hann,none}" in text and "--circle, --no-circle" in text
    assert "--angles SPEC" in text and "--time-budget TIME_BUDGET_S" in text and "steps: 300 unless" in text
    assert "--scale" not in text and "--beta" not in text and "--resolution" not in text  # only CT's options
    for command in BATCH_TASKS:
        with pytest.raises(SystemExit):
            parser.parse_args(["batch", command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        spec = get_spec(command)
        for p in spec.params_for("batch"):
            assert p.cli_flag in text, (command, p.name)
        for p in spec.params:
            if "batch" not in p.doors:
                assert f"{p.cli_flag} " not in text, (command, p.name)


def test_a_new_parameter_reaches_batch_with_one_edit(monkeypatch, tmp_path):
    """A Param added to a spec is a `nestnet batch` option and a manifest column, validated by the spec."""
    import dataclasses

    from reconstruct.app.batch.params import check_run_params

    extra = Param("new_knob", float, 0.25, "a parameter added in one place", low=0.0)
    spec = dataclasses.replace(SPECS["denoise"], params=(*SPECS["denoise"].params, extra))
    monkeypatch.setitem(SPECS, "denoise", spec)
    parser = argparse.ArgumentParser(prog="nestnet")
    add_batch_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["batch", "denoise", "x.png", "--out", "o", "--new-knob", "0.5"])
    assert args.new_knob == 0.5
    with pytest.raises(SystemExit):
        parser.parse_args(["batch", "denoise", "x.png", "--out", "o", "--new-knob", "-1"])
    assert check_run_params(spec, {"new_knob": "0.75"}) == {"new_knob": 0.75}
    with pytest.raises(ValueError, match="new_knob must be"):
        check_run_params(spec, {"new_knob": -1.0})
    write_image(tmp_path / "x.nii.gz", np.zeros((4, 4), np.float32))
    (tmp_path / "m.csv").write_text("path,new_knob\nx.nii.gz,0.5\n")
    assert collect_items([tmp_path / "m.csv"], task="denoise")[0].params == {"new_knob": "0.5"}


# ------------------------------------------------------------------------------------------------
# every task through `nestnet batch` (sequential, tiny sizes, 2 steps)
# ------------------------------------------------------------------------------------------------

TINY = ["--steps", "2", "--model-kwargs", '{"hidden_channels": [16, 16]}', "--device", "cpu",
        "--scheduler", "sequential", "--no-progress"]


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (0.5 + 0.4 * np.sin(xx / 2.0) * np.cos(yy / 3.0)).astype(np.float32)


def _task_inputs(command: str, folder: Path) -> tuple[list[str], list[str]]:
    """``(inputs, extra options)`` of a tiny run of ``command``."""
    meta = ImageMeta((0.5, 0.25), (3.0, -2.0), (1.0, 0.0, 0.0, 1.0))
    if command == "fit-image":
        write_image(folder / "img.png", (_smooth(12, 10) * 255).astype(np.uint8))
        return [str(folder / "img.png")], []
    if command == "denoise":
        clean = _smooth(12, 10)
        write_image(folder / "noisy.nii.gz", clean + 0.05 * np.random.default_rng(0).standard_normal((12, 10)), meta)
        write_image(folder / "clean.nii.gz", clean, meta)
        (folder / "m.csv").write_text("path,reference\nnoisy.nii.gz,clean.nii.gz\n")
        return [str(folder / "m.csv")], []
    if command == "sr":
        write_image(folder / "low.nii.gz", _smooth(6, 5), meta)
        return [str(folder / "low.nii.gz")], ["--scale", "2"]
    if command == "misr":
        np.save(folder / "frames.npy", np.stack([_smooth(6, 6), _smooth(6, 6)[::-1].copy(), _smooth(6, 6).T.copy()]))
        np.savetxt(folder / "shifts.txt", [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
        np.savetxt(folder / "rotations.txt", [0.0, 0.05, -0.05])
        (folder / "m.csv").write_text("path,shifts,rotations\nframes.npy,shifts.txt,rotations.txt\n")
        return [str(folder / "m.csv")], ["--scale", "2"]
    if command == "ct":
        write_phantom_sinograms(folder, count=1, size=16, n_angles=12, pixel_size=0.5)
        return [str(folder / "manifest.csv")], ["--data-filter", "none", "--tv-weight", "0"]
    if command == "ct3d":  # a stack of 4 sinograms (12 angles x 10 bins), slices 2 mm apart in the header
        sino = np.stack([_smooth(12, 10) * (1.0 + 0.1 * k) for k in range(4)])
        stack_meta = ImageMeta((1.0, 1.0, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
        write_image(folder / "stack.nii.gz", sino, stack_meta)
        return [str(folder / "stack.nii.gz")], []
    if command == "occupancy":
        import trimesh

        trimesh.creation.icosphere(subdivisions=1).export(folder / "ball.obj")
        volume = np.zeros((6, 6, 6), np.uint8)
        volume[1:5, 2:5, 1:4] = 1
        write_image(folder / "labels.nii.gz", volume)
        return [str(folder / "ball.obj"), str(folder / "labels.nii.gz")], ["--resolution", "6"]
    assert command == "pinn"
    (folder / "betas.csv").write_text("beta,nx\n5,12\n2.5,\n")
    return [str(folder / "betas.csv")], ["--nx", "10", "--nt", "6", "--n-collocation", "32"]


@pytest.mark.parametrize("command", list(BATCH_TASKS))
def test_every_task_runs_through_nestnet_batch(tmp_path, command, capsys):
    assert set(BATCH_TASKS) == {s.command for s in SPECS.values()}
    parser = argparse.ArgumentParser(prog="nestnet")
    add_batch_parser(parser.add_subparsers(dest="command"))
    data, out = tmp_path / "data", tmp_path / "out"
    data.mkdir()
    inputs, extra = _task_inputs(command, data)
    args = parser.parse_args(["batch", command, *inputs, "--out", str(out), *TINY, *extra])
    assert args.func(args) == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / SUMMARY_NAME, newline="")))
    assert rows and all(r["status"] == "ok" for r in rows)
    spec = get_spec(command)
    for row in rows:
        record = json.loads(Path(row["record"]).read_text())
        assert record["status"] == "ok" and record["task"] == spec.name and record["command"] == command
        refit = (record.get("stop") or {}).get("refit_steps") or 0  # a held-out stop refits on all the data
        assert record["parameters"]["steps"] == 2 and record["steps_run"] == 2 + refit
        assert record["parameters"]["model_kwargs"]["hidden_channels"] == [16, 16]
        assert {p.name for p in spec.params_for("batch")} <= set(record["parameters"])
        arr, meta = read_image(row["output"])
        assert list(arr.shape) == record["output_shape"] and np.isfinite(arr.astype(np.float64)).all()
        if command == "fit-image":
            assert arr.dtype == np.uint8 and arr.shape == (12, 10)
        if command == "denoise":
            assert meta.spacing == pytest.approx((0.5, 0.25)) and "psnr" in record["metrics"]
        if command == "sr":  # the shared rule: scale times finer, the same area
            assert arr.shape == (12, 10) and meta.spacing == pytest.approx((0.25, 0.125))
            assert meta.origin == pytest.approx((3.0 - 0.125, -2.0 - 0.0625))
        if command == "misr":
            assert arr.shape == (12, 12) and record["parameters"]["rotations"] == pytest.approx([0.0, 0.05, -0.05])
        if command == "ct":
            assert record["parameters"]["data_filter"] is None and record["parameters"]["tv_weight"] == 0.0
            assert arr.shape == (16, 16) and meta.spacing == pytest.approx((0.5, 0.5))
            assert set(record["metrics"]) == {"psnr", "ssim"}
        if command == "occupancy":
            assert arr.ndim == 3 and arr.dtype == np.float32 and "iou" in record["metrics"]
            if row["input"].endswith(".obj"):
                assert record["options"] == {"resolution": 6, "padding": 1} and max(arr.shape) == 6 + 2
        if command == "pinn":
            assert record["inputs"] == {"reference": None} and "rel_l2" in record["metrics"]
    if command == "pinn":
        assert [r["name"] for r in rows] == ["beta5", "beta2p5"]
        u, meta = read_image(out / "beta5.npz")
        assert u.shape == (12, 6) and meta.spacing == pytest.approx((1 / 5, 2 * np.pi / 11))
        assert read_image(out / "beta2p5.npz")[0].shape == (10, 6)
        # no manifest: one item from the options
        args = parser.parse_args(["batch", "pinn", "--out", str(tmp_path / "one"), "--beta", "3", *TINY, *extra])
        assert args.func(args) == 0 and (tmp_path / "one" / "beta3.npz").is_file()
    # resumed: all skipped
    args = parser.parse_args(["batch", command, *inputs, "--out", str(out), *TINY, *extra])
    assert args.func(args) == 0
    assert f"{len(rows)} skipped" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# Dask: the embedded local cluster, and an external scheduler with a worker killed mid-run
# ------------------------------------------------------------------------------------------------


def test_cli_on_the_local_cluster(tmp_path, ct_data, capsys):
    """``nestnet batch ct 'GLOB' --out DIR --workers 2`` through the parser, on an embedded LocalCluster."""
    parser = argparse.ArgumentParser(prog="nestnet")
    add_batch_parser(parser.add_subparsers(dest="command"))
    out = tmp_path / "out"
    args = parser.parse_args(["batch", "ct", str(ct_data / "sino_00[01].nii.gz"), "--out", str(out), "--workers", "2",
                              "--steps", str(FAST["steps"]), "--model-kwargs", json.dumps(FAST["model_kwargs"]),
                              "--device", "cpu", "--no-progress"])
    assert args.func(args) == 0
    assert "2 items - 2 done, 0 skipped, 0 failed" in capsys.readouterr().err
    records = [json.loads((out / f"sino_00{i}.json").read_text()) for i in range(2)]
    assert {r["worker"] for r in records} <= {"0", "1"}  # ran on the cluster's worker processes, not in this one
    from reconstruct.app.runtime import tcmalloc_path

    if tcmalloc_path() and os.environ.get("NESTNET_ALLOCATOR", "") not in ("system", "glibc"):
        assert {r["allocator"] for r in records} == {"tcmalloc"}  # preloaded before the workers started
    for i in range(2):
        _check_ct_output(out, f"sino_00{i}", ct_data / f"phantom_00{i}.nii.gz")


def _wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def dask_cluster(tmp_path):
    """A real ``dask scheduler`` and two ``dask worker`` processes (no nanny) on 127.0.0.1."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs: dict[str, subprocess.Popen] = {}
    log = open(tmp_path / "dask.log", "wb")
    try:
        procs["scheduler"] = subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
             "--no-dashboard", "--scheduler-file", str(scheduler_file)], stdout=log, stderr=log, env=env)
        _wait_for(lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0, 60, "the scheduler")
        for name in ("w0", "w1"):
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(scheduler_file),
                 "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", name, "--host", "127.0.0.1",
                 "--local-directory", str(tmp_path / name)], stdout=log, stderr=log, env=env)
        yield scheduler_file, procs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 3
        for proc in procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:  # a graceful close may wait for peers that are gone: enough
                proc.kill()
                proc.wait()
        log.close()


def test_external_scheduler_survives_a_killed_worker(tmp_path, ct_data, dask_cluster):
    from distributed import Client

    scheduler_file, procs = dask_cluster
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    names = [f"sino_00{i}" for i in range(4)]
    for name in names:
        os.link(ct_data / f"{name}.nii.gz", inputs / f"{name}.nii.gz")
    _corrupt(inputs / "sino_bad.nii.gz")
    out = tmp_path / "out"

    address = json.loads(scheduler_file.read_text())["address"]  # what --scheduler tcp://HOST:PORT gets
    assert address.startswith("tcp://127.0.0.1:")
    with Client(address, timeout="60s") as watcher:
        watcher.wait_for_workers(2, timeout=60)
        addr_of = {info["name"]: addr for addr, info in watcher.scheduler_info()["workers"].items()}
        outcome: dict = {}

        def batch() -> None:
            try:
                outcome["summary"] = run_batch("ct", [inputs], out, params=FAST, scheduler=address, progress=False)
            except BaseException as exc:  # handed to the test thread
                outcome["error"] = exc

        thread = threading.Thread(target=batch)
        thread.start()

        def executing():
            found = watcher.run(lambda dask_worker: [str(k) for k in dask_worker.state.executing])
            for name, addr in addr_of.items():
                keys = [k for k in found.get(addr, []) if "nestnet-batch-sino_00" in k]
                if keys:
                    return name, keys
            return None

        victim, keys = _wait_for(executing, 90, "an item running on a worker")
        os.kill(procs[victim].pid, signal.SIGKILL)  # no goodbye: the scheduler loses it mid-item
        procs[victim].wait(timeout=10)
        thread.join(timeout=240)
    assert not thread.is_alive(), "the batch did not finish after a worker was killed"
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]

    status = {r.name: r for r in summary.items}
    assert status["sino_bad"].status == "failed" and "sino_bad.nii.gz" in status["sino_bad"].reason
    assert summary.exit_code == 1
    for name in names:
        assert status[name].status in ("ok", "skipped")
        _check_ct_output(out, name, ct_data / f"{name.replace('sino', 'phantom')}.nii.gz")
    # the killed item was run again on the surviving worker, and written once
    killed = keys[0].split("nestnet-batch-", 1)[1].rsplit("-", 1)[0]
    survivor = "w1" if victim == "w0" else "w0"
    assert json.loads((out / f"{killed}.json").read_text())["worker"] == survivor
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


# ------------------------------------------------------------------------------------------------
# interrupts, and what the embedded cluster serves (real processes)
# ------------------------------------------------------------------------------------------------


def _pinn_run(tmp_path: Path, *extra: str) -> tuple[list[str], Path]:
    (tmp_path / "betas.csv").write_text("beta\n1\n2\n3\n4\n5\n6\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "reconstruct.cli", "batch", "pinn", str(tmp_path / "betas.csv"), "--out", str(out),
           "--steps", "60", "--nx", "16", "--nt", "8", "--model-kwargs", '{"hidden_channels": [16, 16]}',
           "--no-progress", *extra]
    return cmd, out


def _check_true_summary(out: Path) -> dict[str, str]:
    """The summary says what the records on disk say: done items are done, the rest pending."""
    with open(out / SUMMARY_NAME, newline="") as fh:
        rows = list(csv.DictReader(fh))
    status = {}
    for row in rows:
        record = out / f"{row['name']}.json"
        on_disk = json.loads(record.read_text())["status"] if record.exists() else None
        if on_disk == "ok" and (out / f"{row['name']}.npz").exists():
            assert row["status"] == "ok", row
        else:
            assert row["status"] == "pending" and row["reason"] == "interrupted before it finished", row
        status[row["name"]] = row["status"]
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]
    return status


def _stop_after_first_item(proc: subprocess.Popen, out: Path, stop: Callable[[], None]) -> str:
    _wait_for(lambda: proc.poll() is not None or list(out.glob("*.json")), 180, "a finished item")
    assert proc.poll() is None, proc.communicate()
    stop()
    _, err = proc.communicate(timeout=120)
    return err.decode()


def test_sigterm_stops_with_one_line_and_a_true_summary(tmp_path):
    cmd, out = _pinn_run(tmp_path, "--scheduler", "sequential")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    err = _stop_after_first_item(proc, out, lambda: proc.send_signal(signal.SIGTERM))
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted (SIGTERM)" in lines[0] and "pending" in lines[0], err
    status = _check_true_summary(out)
    assert "ok" in status.values() and "pending" in status.values()


def test_ctrl_c_on_the_local_cluster_one_line_no_http_true_summary(tmp_path):
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) on the embedded cluster."""
    import psutil

    holder = socket.socket()
    try:  # hold Dask's default dashboard port: the run must neither use it nor warn that it is taken
        holder.bind(("127.0.0.1", 8787))
        holder.listen(1)
    except OSError:
        pass
    cmd, out = _pinn_run(tmp_path, "--workers", "1")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    listening: list = []

    def stop() -> None:
        tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        for p in tree:
            listening.extend(c.laddr for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
        os.killpg(proc.pid, signal.SIGINT)

    try:
        err = _stop_after_first_item(proc, out, stop)
    finally:
        holder.close()
    # only the comms: the scheduler's, the nanny's and the worker's, on loopback; no HTTP server (8787 or other)
    assert all(addr.ip == "127.0.0.1" for addr in listening), listening
    assert len(listening) == 3 and 8787 not in {a.port for a in listening}, listening
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "interrupted (SIGINT)" in lines[0], err  # no worker traceback, no port warning
    _check_true_summary(out)


def test_an_item_finished_while_the_run_stopped_is_not_pending(tmp_path):
    from reconstruct.app.batch.runner import _settled

    job = {"name": "x", "path": "", "output": str(tmp_path / "x.npz"), "record": str(tmp_path / "x.json")}
    assert _settled(job, "h", time.time()).status == "pending"
    np.savez(tmp_path / "x.npz", image=np.zeros(2))
    (tmp_path / "x.json").write_text(json.dumps({"status": "ok", "param_hash": "h", "metrics": {"rel_l2": 0.1}}))
    done = _settled(job, "h", time.time())
    assert done.status == "ok" and done.metrics == {"rel_l2": 0.1}
    assert _settled(job, "other-parameters", time.time()).status == "pending"
    (tmp_path / "x.json").write_text(json.dumps({"status": "failed", "param_hash": "h", "reason": "bad"}))
    assert _settled(job, "h", time.time() - 60).status == "failed"  # written by this run
    assert _settled(job, "h", time.time() + 60).status == "pending"  # an older run's record
