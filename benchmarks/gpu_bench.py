"""Exhaustive and surrogate q-net search at the paper's scale on one accelerator, against the GEMM peak of the same run.

    python benchmarks/gpu_bench.py --out DIR                      # cuda, bf16, 8,841,823 x 768, 6x768 q-nets, Q=32
    python benchmarks/gpu_bench.py --device cpu --num-docs 20000 --out DIR   # a smoke test of the same code

Steps (each timed with the device synchronised): (1) the bf16 GEMM peak (square 8192 products, and the shape of the
first layer's GEMM); (2) seeded clustered document vectors generated on the device in chunks; (3) exact exhaustive
search of one batch of Q random q-nets of the published shape with the qbatched engine (eager, then torch.compile),
and the per_query engine on a slice; ms per query and the share of the measured peak; (4) surrogate search (inner
products on the device, the q-net rescoring the candidates) at several candidate counts: recall@100 against (3)
and ms per query.  Writes gpu_bench.json and prints a table; --budget-s stops optional steps early.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_qnet import PUBLISHED, random_qnets  # noqa: E402

from pyserini_hypencoder.ann import surrogate_search  # noqa: E402
from pyserini_hypencoder.model.qnet import QNetSpec  # noqa: E402
from pyserini_hypencoder.search.exact import exact_search  # noqa: E402


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


def gemm_peak(device, dtype, m, k, n, seconds=3.0):
    """Best sustained FLOP/s of (m, k) x (k, n) products over about ``seconds``."""
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(k, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best, spent = 0.0, 0.0
    while spent < seconds:
        reps = 10
        _, dt = timed(lambda: [a @ b for _ in range(reps)], device)
        spent += dt
        best = max(best, 2 * m * k * n * reps / dt)
    return best


def clustered_docs(n, d, device, dtype, seed=0, clusters=1024, chunk=1 << 20):
    """(n, d) vectors: a seeded mixture of ``clusters`` Gaussian clusters, made on the device in chunks."""
    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g, device=device)
    out = torch.empty(n, d, device=device, dtype=dtype)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pick = torch.randint(0, clusters, (m,), generator=g, device=device)
        out[start:start + m] = (centres[pick] + 0.7 * torch.randn(m, d, generator=g, device=device)).to(dtype)
    return out


def recall(rows, truth, depth=100):
    hits = [len(set(r[:depth].tolist()) & set(t[:depth].tolist()) - {-1}) / depth for r, t in zip(rows, truth)]
    return sum(hits) / len(hits)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--num-docs", type=int, default=8_841_823)
    p.add_argument("--shape", default="published", help="'published' (6x768) or comma-separated dims")
    p.add_argument("--queries", type=int, default=32)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--candidates", default="1000,2000,4000,8000,16000,32000")
    p.add_argument("--per-query-docs", type=int, default=1_000_000, help="slice timed with the per_query engine")
    p.add_argument("--no-compile", action="store_true")
    p.add_argument("--budget-s", type=float, default=420.0, help="skip optional steps past this wall time")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_bench: no CUDA device visible (pass --device cpu for a smoke test)", file=sys.stderr)
        return 1
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dims = PUBLISHED if args.shape == "published" else [int(v) for v in args.shape.split(",")]
    dtype = torch.bfloat16
    result = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "num_docs": args.num_docs, "dims": dims, "queries": args.queries,
              "dtype": "bf16", "steps": {}}

    def save():
        (out / "gpu_bench.json").write_text(json.dumps(result, indent=1))

    def say(text):
        print(text, flush=True)
        with open(out / "gpu_bench.txt", "a") as f:
            f.write(text + "\n")

    big = 8192 if device.type == "cuda" else 1024
    peak = gemm_peak(device, dtype, big, big, big)
    width = dims[1]
    first = gemm_peak(device, dtype, 21845 if device.type == "cuda" else 2048, dims[0], args.queries * width)
    result["gemm_peak_tflops"] = {"square": peak / 1e12, "first_layer_shape": first / 1e12}
    peak = max(peak, first)
    say(f"bf16 GEMM peak: {result['gemm_peak_tflops']['square']:.1f} TFLOP/s ({big}^3), "
        f"{result['gemm_peak_tflops']['first_layer_shape']:.1f} TFLOP/s (first-layer shape)")
    save()

    docs, dt = timed(lambda: clustered_docs(args.num_docs, dims[0], device, dtype), device)
    result["steps"]["generate_docs_s"] = dt
    mem = torch.cuda.max_memory_allocated() / 2 ** 30 if device.type == "cuda" else None
    say(f"generated {args.num_docs:,} x {dims[0]} bf16 vectors in {dt:.1f} s" + (f" ({mem:.1f} GiB)" if mem else ""))
    qnets = random_qnets(dims, args.queries, seed=1).to(device, dtype)
    flops = QNetSpec(tuple(dims)).flops_per_document() * args.num_docs * args.queries
    result["tflop_per_batch"] = flops / 1e12

    truth, rows = None, []
    engines = [("qbatched", False)] + ([] if args.no_compile else [("qbatched", True)])
    for engine, compile in engines:
        nets = qnets.with_config(engine=engine, compile=compile)
        _, warm = timed(lambda: exact_search(nets, docs[:200_000], args.k), device)   # warm-up (and compilation)
        found, dt = timed(lambda: exact_search(nets, docs, args.k), device)
        truth = found.rows.cpu() if truth is None else truth
        same = recall(found.rows.cpu(), truth, args.k)
        row = {"engine": engine, "compile": compile, "ms_per_query": dt / args.queries * 1000, "batch_s": dt,
               "tflops": flops / dt / 1e12, "share_of_peak": flops / dt / peak, "warmup_s": warm,
               "recall@100_vs_first": same}
        rows.append(row)
        say(f"exact {engine}{' +compile' if compile else ''}: {row['ms_per_query']:.1f} ms/query at Q={args.queries} "
            f"({row['tflops']:.1f} TFLOP/s, {row['share_of_peak']:.0%} of peak; warm-up {warm:.1f} s)")
        result["exact"] = rows
        save()
        if time.perf_counter() - t_start > args.budget_s:
            say("budget reached: skipping the remaining exact engines")
            break
    if time.perf_counter() - t_start < args.budget_s:
        n_slice = min(args.num_docs, args.per_query_docs)
        nets = qnets.with_config(engine="per_query")
        exact_search(nets, docs[:20_000], args.k)
        _, dt = timed(lambda: exact_search(nets, docs[:n_slice], args.k), device)
        per_doc = dt / n_slice
        row = {"engine": "per_query", "compile": False, "docs_timed": n_slice,
               "ms_per_query": per_doc * args.num_docs / args.queries * 1000,
               "tflops": flops / (per_doc * args.num_docs) / 1e12,
               "share_of_peak": flops / (per_doc * args.num_docs) / peak, "extrapolated_from_slice": True}
        rows.append(row)
        say(f"exact per_query (timed on {n_slice:,} docs, scaled to N): {row['ms_per_query']:.1f} ms/query "
            f"({row['share_of_peak']:.0%} of peak)")
        save()

    result["surrogate"] = []
    for c in [int(v) for v in args.candidates.split(",") if v]:
        if time.perf_counter() - t_start > args.budget_s:
            say("budget reached: skipping the remaining surrogate settings")
            break
        nets = qnets.with_config(engine="qbatched")
        surrogate_search(nets, docs, args.k, candidates=c)   # warm-up
        found, dt = timed(lambda: surrogate_search(nets, docs, args.k, candidates=c), device)
        row = {"candidates": c, "recall@100": recall(found.rows.cpu(), truth, args.k),
               "ms_per_query": dt / args.queries * 1000}
        result["surrogate"].append(row)
        say(f"surrogate candidates={c}: recall@100 {row['recall@100']:.3f}, {row['ms_per_query']:.2f} ms/query")
        save()
    result["wall_s"] = time.perf_counter() - t_start
    if device.type == "cuda":
        result["max_memory_allocated_gib"] = torch.cuda.max_memory_allocated() / 2 ** 30
    save()
    say(f"done in {result['wall_s']:.0f} s; wrote {out / 'gpu_bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
