"""Exact q-net scoring against the machine's matrix-multiply peak, and against one-query-at-a-time scoring.

    python benchmarks/bench_qnet.py [--quick] [--device cpu|cuda] [--threads 2] [--json OUT.json]

Prints, in one run on one machine: the measured GEMM peak (fp32, bf16; best of large torch.matmul shapes),
then for each q-net shape and dtype the plugin's exact search (search.exact.exact_search over
QNetBatch.score, Q queries at once) and the original implementation's method (one q-net at a time over
document slices of 100,000, the plain layer-by-layer forward) in document scorings (query x document pairs)
per second, GFLOP/s, fraction of peak (FLOPs = QNetSpec.flops_per_document()), and the speed-up.  For bf16 it
also times the reference's method as the original code runs it, everything cast to bf16 (layer norm, residual
and last layer included), which the plugin's fp32 layer norm and last layer avoid.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from pyserini_hypencoder.model.qnet import QNetBatch, QNetSpec
from pyserini_hypencoder.search.exact import exact_search

PUBLISHED = [768] * 7 + [1]  # the published 6-layer 768-d q-net
DEFAULT_FALLBACK = [384, 384, 384, 1]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
BASELINE_SLICE = 100_000  # the reference's batch_size


def default_model_shape() -> list:
    """q-net shape of the embedded default model (resources/default_model/config.json), else 384-d 3-block."""
    config = Path(__file__).resolve().parents[1] / "pyserini_hypencoder/resources/default_model/config.json"

    def find(obj):
        if isinstance(obj, dict):
            for key, value in obj.items():
                if key == "vector_dimensions" and isinstance(value, list):
                    return value
                found = find(value)
                if found:
                    return found
        return None
    try:
        return [int(x) for x in find(json.loads(config.read_text()))] or DEFAULT_FALLBACK
    except (OSError, ValueError, TypeError):
        return DEFAULT_FALLBACK


def random_qnets(dims, q, dtype=torch.float32, device="cpu", seed=0) -> QNetBatch:
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(q, dims[i], dims[i + 1], generator=g) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    b = [torch.randn(q, 1, dims[i + 1], generator=g) * 0.1 for i in range(len(dims) - 2)]
    return QNetBatch(w, b, QNetSpec(tuple(dims))).to(device, dtype)


def sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, repeats, device) -> float:
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def gemm_peak(dtype, device, quick: bool, repeats: int) -> float:
    """Best GFLOP/s of torch.matmul over a few large, square-ish shapes.

    On CPU both ways of using the cores are measured and the higher counts: one matmul on all torch threads,
    and one single-threaded matmul per thread running concurrently (how QNetBatch.score uses them).
    """
    shapes = [(1024, 768, 1024)] if quick else [(2048, 2048, 2048), (4096, 768, 3072), (8192, 768, 768),
                                                (8192, 384, 384)]
    threads = torch.get_num_threads()
    best = 0.0
    for m, k, n in shapes:
        a = torch.randn(m, k, device=device).to(dtype)
        b = torch.randn(k, n, device=device).to(dtype)
        a @ b
        seconds = best_time(lambda: a @ b, repeats * 2, device)
        best = max(best, 2 * m * k * n / seconds / 1e9)
        if torch.device(device).type == "cpu" and threads > 1:
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(threads) as pool:
                    run_all = lambda: list(pool.map(lambda _: a @ b, range(threads)))  # noqa: E731
                    run_all()
                    seconds = best_time(run_all, repeats * 2, device)
            finally:
                torch.set_num_threads(threads)
            best = max(best, threads * 2 * m * k * n / seconds / 1e9)
    return best


def one_query_at_a_time(qnets: QNetBatch, docs: torch.Tensor, k: int, *, all_in_dtype: bool = False):
    """The reference's method: per query, per slice of 100,000 documents, a plain forward and a top-k, then a
    merge.  ``all_in_dtype``: as the original code runs it, model and embeddings cast together to the documents'
    dtype, so layer norm, residual and the final product run in that dtype too (spec 4.2); otherwise the
    plugin's plain ``forward`` (fp32 layer norm and last layer)."""
    out = []
    with torch.no_grad():
        for i in range(len(qnets)):
            qnet = qnets[i]
            forward = (lambda x: _forward_all_in(qnet, x)) if all_in_dtype else qnet.forward
            best = []
            for start in range(0, docs.shape[0], BASELINE_SLICE):
                scores = forward(docs[start:start + BASELINE_SLICE].unsqueeze(0))[0]
                top = torch.topk(scores, min(k, scores.shape[0]))
                best.append((top.values, top.indices + start))
            values = torch.cat([b[0] for b in best])
            out.append(torch.topk(values, min(k, values.shape[0])).values)
    return out


def _forward_all_in(qnet: QNetBatch, x: torch.Tensor) -> torch.Tensor:
    """One q-net's forward with every tensor in ``x``'s dtype: (1, M, d) -> (1, M)."""
    import torch.nn.functional as F
    weights = [w.to(x.dtype) for w in qnet.weights]
    biases = [b.to(x.dtype) for b in qnet.biases]
    h = x
    for j in range(len(weights) - 1):
        y = torch.relu(torch.bmm(h, weights[j]) + biases[j])
        if qnet.spec.do_layer_norm:
            y = F.layer_norm(y, y.shape[-1:])
        h = y + h if qnet.spec.residual_at(j) else y
    return torch.bmm(h, weights[-1])[:, :, 0]


def run(args) -> dict:
    device = args.device
    if torch.device(device).type == "cpu":
        torch.set_num_threads(args.threads)
    results = {"device": device, "threads": torch.get_num_threads(), "queries": args.queries, "engine": args.engine,
               "peak": {}, "rows": []}
    for name in args.dtypes:
        results["peak"][name] = gemm_peak(DTYPES[name], device, args.quick, args.repeats)
        print(f"GEMM peak {name}: {results['peak'][name]:.1f} GFLOP/s", flush=True)
    shapes = {"published-6x768": PUBLISHED, "default-model": default_model_shape()}
    for shape_name, dims in shapes.items():
        flops = QNetSpec(tuple(dims)).flops_per_document()
        n = args.docs or max(256, int((2e11 if not args.quick else 2e8) / (flops * args.queries)))
        docs = torch.randn(n, dims[0], device=device)
        for name in args.dtypes:
            dtype = DTYPES[name]
            qnets = random_qnets(dims, args.queries, dtype, device)
            x = docs.to(dtype)
            exact_search(qnets, x[: min(n, 64)], 10)  # warm-up
            engine_nets = qnets.with_config(engine=args.engine)
            plugin = best_time(lambda: exact_search(engine_nets, x, args.k), args.repeats, device)
            baseline = best_time(lambda: one_query_at_a_time(qnets, x, args.k), args.repeats, device)
            reference = (baseline if name == "fp32" else
                         best_time(lambda: one_query_at_a_time(qnets, x, args.k, all_in_dtype=True), args.repeats,
                                   device))
            # the peak again, right after, so that load from other processes affects both alike
            peak = max(results["peak"][name], gemm_peak(dtype, device, True, args.repeats))
            results["peak"][name] = peak
            pairs = args.queries * n
            row = {"shape": shape_name, "dims": dims, "dtype": name, "docs": n, "flops_per_doc": flops,
                   "plugin_docs_per_s": pairs / plugin, "baseline_docs_per_s": pairs / baseline,
                   "plugin_gflops": pairs * flops / plugin / 1e9, "baseline_gflops": pairs * flops / baseline / 1e9,
                   "peak_gflops": peak}
            row["plugin_frac"] = row["plugin_gflops"] / peak
            row["baseline_frac"] = row["baseline_gflops"] / peak
            row["speedup"] = baseline / plugin
            row["reference_precision_docs_per_s"] = pairs / reference
            row["speedup_vs_reference_precision"] = reference / plugin
            results["rows"].append(row)
            print(f"{shape_name:16s} {name}: N={n} Q={args.queries} | plugin {row['plugin_docs_per_s']:,.0f} docs/s "
                  f"{row['plugin_gflops']:.1f} GFLOP/s = {row['plugin_frac']:.0%} of peak | one-query baseline "
                  f"{row['baseline_docs_per_s']:,.0f} docs/s {row['baseline_gflops']:.1f} GFLOP/s = "
                  f"{row['baseline_frac']:.0%} | speed-up {row['speedup']:.2f}x", flush=True)
    print("\nsummary (fractions of the highest GEMM peak measured in this run):")
    print("| q-net | dtype | docs | plugin docs/s | plugin GFLOP/s | % of peak | one-query docs/s | % of peak "
          "| speed-up |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results["rows"]:
        peak = results["peak"][row["dtype"]]
        row["plugin_frac"], row["baseline_frac"] = row["plugin_gflops"] / peak, row["baseline_gflops"] / peak
        print(f"| {row['shape']} | {row['dtype']} | {row['docs']} | {row['plugin_docs_per_s']:,.0f} | "
              f"{row['plugin_gflops']:.1f} | {row['plugin_frac']:.0%} | {row['baseline_docs_per_s']:,.0f} | "
              f"{row['baseline_frac']:.0%} | {row['speedup']:.2f}x |")
    print("peak GFLOP/s: " + ", ".join(f"{k} {v:.1f}" for k, v in results["peak"].items()))
    # At equal dtype no scorer can beat the baseline by more than peak / baseline; across dtypes, the plugin's
    # bf16 path against the one-query scorer in fp32 (the reference's default precision).
    for row in results["rows"]:
        row["max_speedup_at_peak"] = 1.0 / row["baseline_frac"]
        print(f"{row['shape']} {row['dtype']}: a scorer at 100% of peak would be {row['max_speedup_at_peak']:.2f}x "
              f"the one-query baseline", flush=True)
    for row in results["rows"]:
        if row["dtype"] != "fp32":
            print(f"{row['shape']} {row['dtype']}: the reference's method with everything in {row['dtype']} (layer norm, "
                  f"residual, last layer): {row['reference_precision_docs_per_s']:,.0f} docs/s; plugin "
                  f"{row['speedup_vs_reference_precision']:.2f}x", flush=True)
    by = {(r["shape"], r["dtype"]): r for r in results["rows"]}
    for shape in dict.fromkeys(r["shape"] for r in results["rows"]):
        if (shape, "bf16") in by and (shape, "fp32") in by:
            ratio = by[shape, "bf16"]["plugin_docs_per_s"] / by[shape, "fp32"]["baseline_docs_per_s"]
            results.setdefault("bf16_plugin_vs_fp32_baseline", {})[shape] = ratio
            print(f"{shape}: plugin bf16 vs one-query baseline fp32: {ratio:.2f}x", flush=True)
    return results


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (CI)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--engine", choices=("batched", "per_query"), default="per_query",
                   help="QNetBatch.score engine of the plugin's exact search (default: per_query, what search uses)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--queries", type=int, default=None, help="Q queries scored together (default 32; quick 4)")
    p.add_argument("--docs", type=int, default=None, help="documents (default: sized to ~200 GFLOP per run)")
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--repeats", type=int, default=None, help="best of R runs (default 3; quick 1)")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    p.add_argument("--json", default=None, help="also write the results as JSON here")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.queries = args.queries or (4 if args.quick else 32)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        print("bench_qnet: error: --device cuda but torch has no CUDA device", file=sys.stderr)
        return 2
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
