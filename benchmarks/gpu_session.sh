#!/usr/bin/env bash
# The one device-tool session that produced the committed CUDA results (benchmarks/results/*cuda*,
# benchmarks/results/paper-gpu/). Runs on a bare GPU machine with PyTorch but without MONAI: the
# MONAI wheel travels in .whl/ and the benchmark images in .gpudata/ (copies of ../shared/data).
#   device run:  bash benchmarks/gpu_session.sh      (carry: .whl .gpudata)
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L
python3 -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__)"
echo "== activation benchmark"
timeout 90 python3 benchmarks/bench_activation.py --device cuda --out "$OUT" | tee "$OUT/activation_cuda.txt"
echo "== CUDA tests"
timeout 60 python3 -m pytest -q -p no:cacheprovider -m cuda tests/monai_nets/test_cuda.py tests/reconstruct/test_radon.py \
    tests/reconstruct/test_noise.py 2>&1 | tail -5 | tee "$OUT/cuda_tests.txt"
echo "== paper protocol slice"
timeout 90 python3 benchmarks/run.py --protocol paper --task image --models nestnet,siren,finer --seeds 1 \
    --max-images 1 --device cuda --data-dir .gpudata --out "$OUT/paper" --no-report
timeout 60 python3 benchmarks/run.py --protocol paper --task ct --models nestnet,siren --seeds 1 \
    --device cuda --data-dir .gpudata --out "$OUT/paper" --no-report
tar czf "$OUT/paper_gpu.tgz" -C "$OUT/paper" . && rm -rf "$OUT/paper"
