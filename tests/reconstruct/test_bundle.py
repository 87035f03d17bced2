"""The example MONAI bundle in configs/ runs with ``python -m monai.bundle run`` (a real subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reconstruct.io import read_image

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "inference.json"
META = ROOT / "configs" / "metadata.json"


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """One intra-op thread, as in the subprocess below: same float sums, and no oversubscription."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


OVERRIDES = {"steps": 5, "n_items": 2, "size": 32, "n_angles": 30, "device": "cpu"}  # two tiny items


def test_bundle_config_is_valid_json():
    config = json.loads(CONFIG.read_text())
    meta = json.loads(META.read_text())
    assert config["network_def"]["_target_"] == "monai_nets.NestNet"
    assert {"run", "batch", "pipeline", "datalist"} <= set(config)
    assert meta["network_data_format"]["inputs"]["sinogram"]["num_channels"] == 1


@pytest.mark.filterwarnings("ignore:parsing config_file")
def test_bundle_runs_pipeline_and_batch(tmp_path):
    pytest.importorskip("fire", reason="python -m monai.bundle needs the 'fire' package (dev extra)")
    # the documented command line, in a real subprocess; one thread (the 2 shared cores are oversubscribed)
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(CONFIG), "--meta_file", str(META),
           "--output_dir", str(tmp_path)]
    for key, value in OVERRIDES.items():
        cmd += [f"--{key}", str(value)]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [Path(m["input"]).name for m in metrics] == ["sino_000.nii.gz", "sino_001.nii.gz"]
    assert all(m["steps"] == 5 and np.isfinite(m["metrics"]["psnr"]) for m in metrics)

    # the bundle's "batch" run id: the same network and items through reconstruct.batch.run_batch (in-process:
    # torch is imported already, and the subprocess above has shown the command line works)
    from monai.bundle import run

    run("batch", config_file=str(CONFIG), meta_file=str(META), output_dir=str(tmp_path), **OVERRIDES)
    for i, m in enumerate(metrics):
        piped, meta = read_image(tmp_path / "recon" / f"sino_00{i}_recon.nii.gz")
        batched, batch_meta = read_image(tmp_path / "batch" / f"sino_00{i}.nii.gz")
        phantom, _ = read_image(tmp_path / "phantoms" / f"phantom_00{i}.nii.gz")
        assert piped.shape == batched.shape == phantom.shape == (32, 32)
        assert meta.spacing == pytest.approx((1.0, 1.0)) and batch_meta.spacing == pytest.approx((1.0, 1.0))
        # the MONAI pipeline (index-order arrays, SaveImage) and the batch runner agree pixel for pixel
        np.testing.assert_allclose(piped, batched, atol=1e-6)
        record = json.loads((tmp_path / "batch" / f"sino_00{i}.json").read_text())
        assert record["metrics"]["psnr"] == pytest.approx(m["metrics"]["psnr"], abs=0.05)
        # both front doors ran the same task with the same parameters, every one of them recorded
        assert record["status"] == "ok" and record["task"] == "ct_reconstruct" and record["command"] == "ct"
        assert record["parameters"] == m["parameters"]
        assert record["parameters"]["tv_weight"] == 1e-3 and record["parameters"]["data_filter"] == "ramp"
        assert record["parameters"]["model_kwargs"]["hidden_channels"] == [128, 128]
