#!/usr/bin/env bash
# One call on a lent GPU machine (bench/GPU.md): the CUDA-only tests, then bench/train.py on cuda,
# every output under $OUT. Run from the repository root there, with bench/GPU.md's wheels in .whl/.
# BENCH_TIMEOUT (seconds, default 240) bounds the benchmark, so that the call ends inside its limit
# and the figures of every finished stage come back (bench/train.py --json writes them as it goes).
set -uo pipefail
out=${OUT:-/tmp/emocache-gpu}
mkdir -p "$out"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' | tee -a "$out/gpu.txt"
# The compiled-step test last: its compile time is the least known, and it must not eat the benchmark's.
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/train/test_train_cuda.py -k "not captured" 2>&1 | tee "$out/cuda_tests.log"
timeout 30 python3 bench/dropout.py --device cuda --json "$out/dropout.json" 2>&1 | tee "$out/dropout.log"
timeout 30 python3 bench/gru.py --device cuda --json "$out/gru.json" 2>&1 | tee "$out/gru.log"
timeout "${BENCH_TIMEOUT:-240}" python3 bench/train.py --device cuda --scale 1 --protocol-epochs 2 --protocol-fraction 0.05 \
    --dir /tmp/emocache-bench --json "$out/train.json" --results "$out/RESULTS-gpu.md" 2>&1 | tee "$out/train.log"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/train/test_train_cuda.py -k captured 2>&1 | tee "$out/cuda_compile_test.log"
