"""The example MONAI bundle in configs/: MONAI's bundle checks and ``python -m monai.bundle run`` (a subprocess)."""

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


# MONAI bundle specification (docs/source/mb_specification.rst): mandatory metadata keys and tensor format keys
SPEC_META_KEYS = {"version", "monai_version", "pytorch_version", "numpy_version", "task", "description", "authors",
                  "copyright", "network_data_format"}
SPEC_TENSOR_KEYS = {"type", "format", "modality", "num_channels", "spatial_shape", "dtype", "value_range",
                    "is_patch_data", "channel_def"}


def test_bundle_follows_the_specification():
    config = json.loads(CONFIG.read_text())
    meta = json.loads(META.read_text())
    assert SPEC_META_KEYS <= set(meta) and "required_packages_version" in meta
    fmt = meta["network_data_format"]
    # the names MONAI's tools look up (verify_net_in_out, ckpt_export): inputs "image", outputs "pred"
    assert set(fmt["inputs"]) == {"image"} and set(fmt["outputs"]) == {"pred"}
    for spec in (fmt["inputs"]["image"], fmt["outputs"]["pred"]):
        assert SPEC_TENSOR_KEYS <= set(spec)
        assert spec["type"] == "image" and len(spec["spatial_shape"]) == 2
        assert sorted(spec["channel_def"]) == [str(i) for i in range(spec["num_channels"])]
    assert fmt["inputs"]["image"]["num_channels"] == 2 and fmt["outputs"]["pred"]["num_channels"] == 1
    # the standard config keys of an inference bundle that apply to a per-item fit (no evaluator/inferer)
    assert {"imports", "bundle_root", "device", "dataset_dir", "network_def", "network", "dataset", "preprocessing",
            "postprocessing", "run"} <= set(config)
    assert config["network_def"]["_target_"] == "monai_nets.ChannelFirst"
    assert "_mode_" not in config["network_def"]  # an instance, as verify_net_in_out and ckpt_export need


def test_bundle_writes_under_bundle_root_eval_by_default():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    assert os.path.normpath(parser.get_parsed_content("output_dir")) == "eval"
    parser["bundle_root"] = "/data/run1"
    parser.parse()
    assert parser.get_parsed_content("dataset_dir") == os.path.join("/data/run1", "eval", "phantoms")


def test_verify_net_in_out_passes():
    import torch
    from monai.bundle import ConfigParser, verify_net_in_out

    for size in (1, 8):  # "*" spatial sizes: MONAI's default 1 and a real grid
        verify_net_in_out(net_id="network_def", meta_file=str(META), config_file=str(CONFIG), device="cpu", any=size)
    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    net = parser.get_parsed_content("network_def")
    assert [type(m).__name__ for m in (net, net.network)] == ["ChannelFirst", "NestNet"]
    assert net.network.height == 2 and net.network.activations[0].num_subnets == 2
    assert net(torch.rand(1, 2, 5, 6) * 2 - 1).shape == (1, 1, 5, 6)


def test_verify_metadata_against_the_schema(tmp_path):
    """Needs the schema named in metadata.json (downloaded once); skipped when it cannot be fetched."""
    import socket
    import urllib.error

    from monai.bundle import verify_metadata

    schema = tmp_path / "schema.json"
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        verify_metadata(meta_file=str(META), filepath=str(schema))
    except (urllib.error.URLError, OSError, RuntimeError) as exc:
        if schema.exists():
            raise
        pytest.skip(f"schema not downloadable here ({type(exc).__name__}); MONAI's verify_metadata needs it")
    finally:
        socket.setdefaulttimeout(previous)


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
    # 5 steps with a tenth of the projections held out (CT's default), then the refit on all of them
    assert all(5 <= m["steps"] <= 10 and np.isfinite(m["metrics"]["psnr"]) for m in metrics)

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
