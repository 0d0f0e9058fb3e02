#!/usr/bin/env bash
# The paper-scale GPU run (issue 14): on a machine with a CUDA GPU, from the repository root.
#   bash benchmarks/gpu_run.sh              # results go to $OUT (default ./gpu-run-out); copy them to docs/gpu/
# Measures, bf16, 8,841,823 x 768 vectors, random q-nets of the published 6x768 shape, batches of 32 queries:
# the bf16 GEMM peak, exact exhaustive search (qbatched engine, eager and torch.compile; per_query on a 1M slice),
# and surrogate recall@100 / latency (benchmarks/gpu_bench.py).  Also runs the CUDA correctness tests of the
# qbatched engine.  Installs nothing.  Target: about 6 minutes of device time (each step capped with `timeout`).
set -u
NAME=gpu_run
. "$(dirname "$0")/_gpu_env.sh"
if ! $PY -c "import pyserini_hypencoder" 2>/dev/null; then export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; fi
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  log "MISSING: a CUDA-enabled torch and a visible GPU; nothing to measure"; exit 1
fi
$PY -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" 2>&1 | tee -a "$OUT/gpu_run.log"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv 2>&1 | tee -a "$OUT/gpu_run.log"
log "1/2 qbatched engine on CUDA vs the CPU engine (eager and torch.compile)"
timeout 150 $PY -m pytest -q tests/test_engine_qbatched.py -k cuda 2>&1 | tail -5 | tee "$OUT/test_engine_qbatched_cuda.txt"
log "2/2 paper scale: 8.8M x 768, 6x768 q-nets, Q=32"
timeout 420 $PY benchmarks/gpu_bench.py --out "$OUT" --budget-s 330 2>&1 | tee "$OUT/gpu_bench_stdout.txt"
log "done; outputs in $OUT (gpu_bench.json, gpu_bench.txt)"
