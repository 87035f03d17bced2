"""End-to-end tests of the ``nestnet`` command on tiny files (few steps, small networks)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.transform import radon

from reconstruct.cli import main
from reconstruct.io import ImageMeta, read_image, write_image

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--model-kwargs", '{"hidden_channels": [16, 16]}', "--no-progress"]
SUBCOMMANDS = ("fit-image", "denoise", "sr", "misr", "ct", "occupancy", "pinn", "demo", "batch")


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def record_of(path: Path) -> dict:
    return json.loads(path.read_text())


def gradient(h: int = 16, w: int = 16) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 11) % 97 / 96.0).astype(np.float32)


def test_help_runs_as_a_module():
    proc = subprocess.run([sys.executable, "-m", "reconstruct.cli", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for name in SUBCOMMANDS:
        assert name in proc.stdout


def test_every_subcommand_has_help(capsys):
    for name in SUBCOMMANDS:
        code, out, _ = run(capsys, name, "--help")
        assert code == 0 and "usage: nestnet" in out


def test_fit_image_png_writes_png_and_record(tmp_path, capsys):
    src = tmp_path / "img.png"
    write_image(src, (gradient() * 255).astype(np.uint8))
    code, out, err = run(capsys, "fit-image", src, "--steps", "3", "--seed", "1", *SMALL)
    assert code == 0, err
    result, _ = read_image(tmp_path / "img_fit.png")
    assert result.shape == (16, 16) and result.dtype == np.uint8
    rec = record_of(tmp_path / "img_fit.json")
    assert rec["command"] == "nestnet fit-image" and rec["steps_run"] == 3 and len(rec["history"]) == 3
    assert rec["parameters"]["steps"] == 3 and rec["parameters"]["seed"] == 1
    assert rec["parameters"]["model"] == "nestnet" and rec["parameters"]["lr"] == 5e-3
    assert rec["parameters"]["model_kwargs"] == {"hidden_channels": [16, 16]}
    assert "psnr" in rec["metrics"] and rec["seconds"] > 0 and "torch" in rec["versions"]
    assert "img_fit.png" in out


def test_progress_bar_in_a_log_redraws_rarely(tmp_path, capsys):
    # stderr captured = not a terminal, as in `make demo > log`: the bar must not write one update per step
    src = tmp_path / "img.png"
    write_image(src, (gradient() * 255).astype(np.uint8))
    code, _, err = run(capsys, "fit-image", src, "--steps", "200", "--model-kwargs", '{"hidden_channels": [8]}')
    assert code == 0, err
    assert "step" in err and err.count("\r") <= 5


def test_denoise_nifti_volume_keeps_geometry_and_scores_reference(tmp_path, capsys):
    clean = np.stack([gradient(8, 8) * (k + 1) / 4 for k in range(4)])  # (4, 8, 8)
    noisy = clean + 0.05 * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    meta = ImageMeta((0.5, 0.7, 2.0), (10.0, -5.0, 3.0), direction)
    write_image(tmp_path / "noisy.nii.gz", noisy, meta)
    write_image(tmp_path / "clean.nii.gz", clean, meta)
    out = tmp_path / "out" / "den.nii.gz"
    code, _, err = run(capsys, "denoise", tmp_path / "noisy.nii.gz", "--reference", tmp_path / "clean.nii.gz",
                       "--out", out, "--steps", "2", *SMALL)
    assert code == 0, err
    arr, got = read_image(out)
    assert arr.shape == noisy.shape
    np.testing.assert_allclose(got.spacing, meta.spacing, rtol=1e-6)
    np.testing.assert_allclose(got.origin, meta.origin, rtol=1e-6)
    np.testing.assert_allclose(got.direction, meta.direction, atol=1e-6)
    rec = record_of(out.with_name("den.json"))
    assert set(rec["metrics"]) == {"psnr", "ssim"} and rec["best"]["step"] >= 1
    assert rec["parameters"]["spacing"] == pytest.approx([2.0, 0.7, 0.5])  # array order for the grid


def test_sr_scales_the_spacing(tmp_path, capsys):
    meta = ImageMeta((1.0, 2.0), (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    write_image(tmp_path / "low.mha", gradient(8, 8), meta)
    code, out, err = run(capsys, "sr", tmp_path / "low.mha", "--scale", "2", "--steps", "2", *SMALL)
    assert code == 0, err
    arr, got = read_image(tmp_path / "low_sr2x.mha")
    assert arr.shape == (16, 16)
    np.testing.assert_allclose(got.spacing, (0.5, 1.0))
    np.testing.assert_allclose(got.origin, (-0.25, -0.5))  # first fine centre half a coarse pixel in


def test_sr_simulate_scores_against_the_input(tmp_path, capsys):
    np.save(tmp_path / "hr.npy", gradient(16, 16))
    code, out, err = run(capsys, "sr", tmp_path / "hr.npy", "--simulate", "--scale", "4", "--steps", "2", *SMALL)
    assert code == 0, err
    assert np.load(tmp_path / "hr_sr4x.npy").shape == (16, 16)
    rec = record_of(tmp_path / "hr_sr4x.json")
    assert rec["simulated_lowres"] is True and "psnr" in rec["metrics"]
    assert set(rec["baselines"]["bicubic"]) == {"psnr", "ssim"}
    assert "bicubic:" in out


def test_misr_from_files_and_simulated(tmp_path, capsys):
    np.save(tmp_path / "hr.npy", gradient(16, 16))
    code, _, err = run(capsys, "misr", tmp_path / "hr.npy", "--simulate", "--scale", "2", "--steps", "2", *SMALL)
    assert code == 0, err
    assert np.load(tmp_path / "hr_misr2x.npy").shape == (16, 16)
    frames = np.stack([gradient(8, 8), gradient(8, 8)[::-1]])
    np.save(tmp_path / "frames.npy", frames)
    (tmp_path / "shifts.txt").write_text("0 0\n1.0, 0.5\n")
    (tmp_path / "rot.txt").write_text("0\n0.1\n")
    code, _, err = run(capsys, "misr", tmp_path / "frames.npy", "--shifts", tmp_path / "shifts.txt",
                       "--rotations", tmp_path / "rot.txt", "--scale", "2", "--steps", "2", *SMALL)
    assert code == 0, err
    assert np.load(tmp_path / "frames_misr2x.npy").shape == (16, 16)
    rec = record_of(tmp_path / "frames_misr2x.json")
    assert rec["parameters"]["shifts"] == [[0.0, 0.0], [1.0, 0.5]] and rec["parameters"]["rotations"] == [0.0, 0.1]


@pytest.fixture
def ct_files(tmp_path, phantom_factory):
    phantom = phantom_factory(17)
    theta = np.linspace(0.0, 180.0, 12, endpoint=False)
    sino = radon(phantom.astype(np.float64), theta=theta, circle=True).astype(np.float32)
    np.save(tmp_path / "sino.npy", sino)
    np.save(tmp_path / "truth.npy", phantom)
    return tmp_path, sino, theta


def test_ct_skimage_layout_with_reference(ct_files, capsys):
    folder, _, _ = ct_files
    code, out, err = run(capsys, "ct", folder / "sino.npy", "--angles", "0:180:12", "--reference",
                         folder / "truth.npy", "--steps", "3", *SMALL)
    assert code == 0, err
    assert np.load(folder / "sino_recon.npy").shape == (17, 17)
    rec = record_of(folder / "sino_recon.json")
    assert set(rec["baselines"]["fbp"]) == {"psnr", "ssim"} and rec["best"]["oracle"] is True
    assert rec["parameters"]["angles_deg"] == pytest.approx(np.linspace(0, 180, 12, endpoint=False).tolist())
    assert rec["parameters"]["data_filter"] == "ramp" and rec["parameters"]["tv_weight"] == 1e-3
    assert "FBP:" in out


def test_ct_torch_layout_angles_file_and_recipe_options(ct_files, capsys):
    folder, sino, theta = ct_files
    np.save(folder / "sino_t.npy", sino.T.copy())
    np.savetxt(folder / "angles.txt", theta)
    out = folder / "recon.tif"
    code, _, err = run(capsys, "ct", folder / "sino_t.npy", "--layout", "torch", "--angles", folder / "angles.txt",
                       "--data-filter", "none", "--tv-weight", "0", "--output-size", "21", "--out", out,
                       "--steps", "2", *SMALL)
    assert code == 0, err
    arr, _ = read_image(out)
    assert arr.shape == (21, 21) and arr.dtype == np.float32
    rec = record_of(folder / "recon.json")
    assert rec["parameters"]["data_filter"] is None and rec["parameters"]["tv_weight"] == 0.0


def test_occupancy_from_volume_and_mesh(tmp_path, capsys):
    z, y, x = np.mgrid[0:12, 0:12, 0:12] - 5.5
    np.save(tmp_path / "ball.npy", (x**2 + y**2 + z**2 < 16).astype(np.uint8))
    code, _, err = run(capsys, "occupancy", tmp_path / "ball.npy", "--steps", "3", *SMALL)
    assert code == 0, err
    assert np.load(tmp_path / "ball_occupancy.npy").shape == (12, 12, 12)
    assert "iou" in record_of(tmp_path / "ball_occupancy.json")["metrics"]

    import trimesh

    trimesh.creation.box(extents=(1.0, 2.0, 3.0)).export(tmp_path / "box.stl")
    code, _, err = run(capsys, "occupancy", tmp_path / "box.stl", "--resolution", "8", "--steps", "3",
                       "--surface", tmp_path / "fit.ply", "--level", "0.5", "--lr", "0.05", *SMALL)
    assert code == 0, err
    volume = np.load(tmp_path / "box_occupancy.npy")
    assert volume.ndim == 3 and max(volume.shape) == 8 + 2  # one empty voxel of padding on each side
    rec = record_of(tmp_path / "box_occupancy.json")
    assert rec["resolution"] == 8 and rec["padding"] == 1
    assert (tmp_path / "fit.ply").exists() and rec["surface_faces"] > 0


def test_pinn_writes_the_solution(tmp_path, capsys):
    out = tmp_path / "u.npy"
    code, _, err = run(capsys, "pinn", "--beta", "1", "--nx", "16", "--nt", "8", "--steps", "2", "--out", out, *SMALL)
    assert code == 0, err
    assert np.load(out).shape == (16, 8)
    rec = record_of(tmp_path / "u.json")
    assert "rel_l2" in rec["metrics"] and rec["inputs"]["beta"] == 1.0


def test_demo_prints_psnr_and_writes_figure(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ("demo", "--size", "24", "--n-angles", "10", "--steps", "3", "--out", out, *SMALL)
    code, stdout, err = run(capsys, *args)
    assert code == 0, err
    assert "FBP" in stdout and "nestnet" in stdout and "PSNR" in stdout
    figure, _ = read_image(out / "ct_demo.png")
    assert figure.ndim == 3 and figure.shape[1] > 2 * figure.shape[0]  # three panels side by side
    rec = record_of(out / "ct_demo.json")
    assert set(rec["baselines"]["fbp"]) == {"psnr", "ssim"} and set(rec["metrics"]) == {"psnr", "ssim"}
    assert np.load(out / "ct_demo_nestnet.npy").shape == (24, 24)
    assert run(capsys, *args)[0] == 0  # re-running the demo replaces its own outputs


# ------------------------------------------------------------------------------------------------ errors


def assert_one_line_error(code: int, err: str, match: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("nestnet: error: ") and match in lines[0], lines[0]
    assert "Traceback" not in err


def test_nan_input(tmp_path, capsys):
    bad = gradient()
    bad[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    code, _, err = run(capsys, "fit-image", tmp_path / "nan.npy", "--steps", "2", *SMALL)
    assert_one_line_error(code, err, "NaN")
    assert not (tmp_path / "nan_fit.npy").exists() and not (tmp_path / "nan_fit.json").exists()


def test_wrong_rank(tmp_path, capsys):
    np.save(tmp_path / "line.npy", np.arange(10.0))
    code, _, err = run(capsys, "denoise", tmp_path / "line.npy", *SMALL)
    assert_one_line_error(code, err, "must be a 2-D")


def test_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, "ct", tmp_path / "nope.npy", *SMALL)
    assert_one_line_error(code, err, "does not exist")


def test_unreadable_file(tmp_path, capsys):
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    code, _, err = run(capsys, "fit-image", tmp_path / "broken.png", *SMALL)
    assert_one_line_error(code, err, "broken.png")


def test_existing_output_needs_overwrite(tmp_path, capsys):
    np.save(tmp_path / "a.npy", gradient())
    (tmp_path / "b.npy").write_bytes(b"keep me")
    code, _, err = run(capsys, "fit-image", tmp_path / "a.npy", "--out", tmp_path / "b.npy", "--steps", "1", *SMALL)
    assert_one_line_error(code, err, "--overwrite")
    assert (tmp_path / "b.npy").read_bytes() == b"keep me"
    code, _, err = run(capsys, "fit-image", tmp_path / "a.npy", "--out", tmp_path / "b.npy", "--steps", "1",
                       "--overwrite", *SMALL)
    assert code == 0, err
    assert np.load(tmp_path / "b.npy").shape == (16, 16)


def test_output_equal_to_input(tmp_path, capsys):
    np.save(tmp_path / "a.npy", gradient())
    code, _, err = run(capsys, "denoise", tmp_path / "a.npy", "--out", tmp_path / "a.npy", "--overwrite", *SMALL)
    assert_one_line_error(code, err, "is the input")
    assert np.load(tmp_path / "a.npy").shape == (16, 16)


def test_output_inside_input(tmp_path, capsys):
    (tmp_path / "scans").mkdir()
    code, _, err = run(capsys, "denoise", tmp_path / "scans", "--out", tmp_path / "scans" / "x.npy", *SMALL)
    assert_one_line_error(code, err, "inside the input")


def test_angle_mismatch(ct_files, capsys):
    folder, _, _ = ct_files
    code, _, err = run(capsys, "ct", folder / "sino.npy", "--angles", "0:180:7", *SMALL)
    assert_one_line_error(code, err, "12 angle columns but 7 angles")


def test_scale_not_dividing(tmp_path, capsys):
    np.save(tmp_path / "hr.npy", gradient(18, 18))
    code, _, err = run(capsys, "sr", tmp_path / "hr.npy", "--simulate", "--scale", "4", *SMALL)
    assert_one_line_error(code, err, "does not divide")
    code, _, err = run(capsys, "misr", tmp_path / "hr.npy", "--simulate", "--scale", "4", *SMALL)
    assert_one_line_error(code, err, "does not divide")


def test_usage_errors_exit_2(tmp_path, capsys):
    np.save(tmp_path / "a.npy", gradient())
    code, _, err = run(capsys, "fit-image", tmp_path / "a.npy", "--model-kwargs", "{oops")
    assert code == 2 and "not valid JSON" in err
    code, _, err = run(capsys, "fit-image", tmp_path / "a.npy", "--model", "resnet")
    assert code == 2 and "invalid choice" in err
    code, _, err = run(capsys, "ct", tmp_path / "a.npy", "--tv-weight", "-1")
    assert code == 2 and "tv_weight must be a finite number in [0, inf]" in err
    code, _, err = run(capsys, "ct", tmp_path / "a.npy", "--data-filter", "gauss")
    assert code == 2 and "data_filter must be one of ramp" in err
    code, _, err = run(capsys, "misr", tmp_path / "a.npy", *SMALL)
    assert_one_line_error(code, err, "--shifts")
