#!/usr/bin/env bash
# GPU check of the speed work: run on a machine with a CUDA GPU, from the repository root.
#   bash benchmarks/gpu_check.sh            # results go to $OUT (default ./gpu-check-out)
# Installs nothing. Uses ./.venv/bin/python if it exists, else python3; prints what is missing and stops.
# Total runtime target: under 6 minutes (each step is capped with `timeout`).
set -u
NAME=gpu_check
. "$(dirname "$0")/_gpu_env.sh"
missing=$($PY - <<'PY'
import importlib
need = ["torch", "numpy", "faiss", "tqdm", "pyserini_hypencoder"]
print(" ".join(m for m in need if importlib.util.find_spec(m) is None))
PY
)
if [ -n "$missing" ]; then
  log "MISSING python packages: $missing (install them, or run with PYTHON=/path/to/python; for the package itself"
  log "  PYTHONPATH=$PWD works when its dependencies are present)"
  if echo "$missing" | grep -q pyserini_hypencoder; then export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"; fi
fi
$PY - <<'PY' 2>&1 | tee -a "$OUT/gpu_check.log"
import torch
print("torch", torch.__version__, "cuda available:", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
if ! $PY -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  log "MISSING: a CUDA-enabled torch and a visible GPU; nothing to measure"; exit 1
fi
log "1/3 q-net exact scoring vs GEMM peak on cuda"
timeout 150 $PY benchmarks/bench_qnet.py --device cuda --queries 32 --repeats 3 --json "$OUT/bench_qnet_cuda.json" \
  2>&1 | tee "$OUT/bench_qnet_cuda.txt"
log "2/3 ANN correctness on cuda (graph = exact with a complete graph; ivf with all lists = exact; surrogate with all candidates = exact)"
timeout 60 $PY - <<'PY' 2>&1 | tee "$OUT/ann_cuda_check.txt"
import numpy as np, torch
from pyserini_hypencoder.ann import build_graph, build_ivf, probe, surrogate_search, walk
from pyserini_hypencoder.model.qnet import QNetBatch, QNetSpec
from pyserini_hypencoder.search.exact import exact_search
g = torch.Generator().manual_seed(0)
dims = (32, 32, 32, 1)
w = [torch.randn(8, dims[i], dims[i + 1], generator=g) / dims[i] ** 0.5 for i in range(3)]
b = [torch.randn(8, 1, dims[i + 1], generator=g) * 0.1 for i in range(2)]
for dtype in (torch.float32, torch.bfloat16):
    q = QNetBatch(w, b, QNetSpec(dims)).to("cuda", dtype)
    x = np.random.default_rng(0).standard_normal((300, 32)).astype(np.float32)
    xt = torch.from_numpy(x).cuda()
    es, er = exact_search(q, xt, 20)
    gs, gr = walk(q, xt, build_graph(x, neighbours=299, progress=False), 20,
                  entry_points=3, n_candidates=300, max_iter=3, early_stop=False)
    iv = build_ivf(x, nlist=8, progress=False)
    is_, ir = probe(q, xt, iv, 20, nprobe=8)
    ss, sr = surrogate_search(q, xt, 20, candidates=300)
    s2, sr2 = surrogate_search(q, xt, 20, candidates=60, anchors=64)  # the inner-product path
    print(dtype, "graph==exact", torch.equal(gr, er), "ivf==exact", torch.equal(ir, er),
          "surrogate(all)==exact", torch.equal(sr, er), "surrogate(60) shape", tuple(sr2.shape))
PY
log "3/3 reduced ANN benchmark on cuda (random data)"
timeout 90 $PY benchmarks/bench_ann.py --quick --device cuda --json "$OUT/bench_ann_quick_cuda.json" 2>&1 | tee "$OUT/bench_ann_quick_cuda.txt"
log "done; outputs in $OUT"
