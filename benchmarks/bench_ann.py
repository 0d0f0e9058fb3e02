"""Approximate q-net search (IVF pools, graph walks, surrogate pools) against exact search: recall, cost, latency,
memory.

    python benchmarks/bench_ann.py --quick                                  # CI: small random data, seconds
    python benchmarks/bench_ann.py real --index DIR --encoder MODEL --topics TSV [--qrels TXT] --json OUT
    python benchmarks/bench_ann.py scale --index DIR --encoder MODEL --topics TSV --num-docs 1000000 \\
        --work DIR --json OUT                                               # vectors drawn like the index's
    python benchmarks/bench_ann.py scale --index DIR --random-qnets published --num-queries 32 ...
        # the published 6x768 shape: random q-nets, the index's vectors lifted to 768-d
    python benchmarks/bench_ann.py plot RESULT.json ... --png docs/ann_recall_latency.png
    python benchmarks/bench_ann.py table RESULT.json ...                  # markdown table

For every method and parameter setting it prints recall@10 and recall@100 against exact search, nDCG@10 (with
--qrels), documents scored per query (centroids included), latency p50/p95 per query (each batch of 32 queries
timed as a whole and divided by its size) and the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from pyserini_hypencoder.ann import build_graph, build_ivf, ivf_candidates, probe, surrogate_search, walk
from pyserini_hypencoder.formats import read_qrels, read_topics
from pyserini_hypencoder.index import Vectors, as_vectors
from pyserini_hypencoder.metrics import ndcg
from pyserini_hypencoder.model.qnet import QNetBatch
from pyserini_hypencoder.search.exact import exact_search
from pyserini_hypencoder.topk import TopK

from bench_qnet import PUBLISHED, random_qnets, sync  # the q-net benchmark's random q-nets and device sync


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024


# -- methods -------------------------------------------------------------------------------------------
def sweep(n: int, quick: bool, graph_ok: bool, ivf_ok: bool, nlist: int, k: int):
    """(method, params) pairs; sizes relative to N so that every setting is cheaper than exact search."""
    configs = [("exact", {})]
    if ivf_ok:
        probes = [1, 2, 4] if quick else [4, 8, 16, 32, 64, 128]
        configs += [("ivf", {"nprobe": p}) for p in probes if p < nlist]
    if graph_ok:
        if quick:
            configs += [("graph", {"entry_points": 16, "n_candidates": 8, "max_iter": 4})]
        else:
            for ep in (100, 1000):
                for nc in (16, 64):
                    for it in (4, 16):
                        configs.append(("graph", {"entry_points": min(ep, n), "n_candidates": nc, "max_iter": it}))
            configs.append(("graph", {"entry_points": min(1000, n), "n_candidates": 64, "max_iter": 16,
                                      "variant": "paper"}))
    for c in ([100, 400] if quick else [200, 500, 1000, 2000]):
        if c < n:
            configs.append(("surrogate", {"candidates": c}))
    if graph_ok and ivf_ok:
        for p in ([1] if quick else [4, 8, 16]):
            if p < nlist:
                configs.append(("ivf+graph", {"nprobe": p, "n_candidates": 16 if quick else 64,
                                              "max_iter": 4 if quick else 8}))
    return configs


def run_method(method, params, qnets, vectors: Vectors, graph, ivf, k, source=None) -> TopK:
    """One strategy on explicit vectors and structures (the library's functions under the registered ones)."""
    if method == "exact":
        return exact_search(qnets, vectors, k)
    if method == "ivf":
        return probe(qnets, vectors, ivf, k, **params)
    if method == "graph":
        return walk(qnets, vectors, graph, k, **params)
    if method == "surrogate":
        return surrogate_search(qnets, vectors if source is None else source, k, **params)
    if method == "ivf+graph":   # what graph_search(ivf_nprobe=...) does with the index's own structures
        params = dict(params)
        pool = ivf_candidates(qnets, ivf, params.pop("nprobe"))
        found = walk(qnets, vectors, graph, k, initial_candidates=pool, **params)
        return TopK(found.scores, found.rows, found.scored + len(ivf["centroids"]))
    raise ValueError(method)


def recall(rows, truth, depth):
    depth = min(depth, truth.shape[1])
    hits = [len(set(r[:depth].tolist()) & set(t[:depth].tolist()) - {-1}) / depth for r, t in zip(rows, truth)]
    return float(np.mean(hits))


def ndcg10(rows, qids, docids, qrels):
    """Mean nDCG@10 over the judged queries (rows in score order)."""
    values = [ndcg([docids[i] for i in row[:10].tolist() if i >= 0], qrels[qid], 10)
              for row, qid in zip(rows, qids) if qrels.get(qid)]
    return float(np.mean(values)) if values else float("nan")


def evaluate(qnets: QNetBatch, vectors: torch.Tensor, graph, ivf, *, k=100, batch=32, quick=False, qids=None,
             docids=None, qrels=None, configs=None, label="", truth_cache=None, truth=None):
    source = vectors   # an index is passed on as it is (strategies find its structures, e.g. faiss-ivf)
    vectors = as_vectors(vectors)   # one wrapper, so its whole-matrix cache serves every call
    device = getattr(vectors.stored, "device", qnets.device)
    n = vectors.num_rows
    nlist = len(ivf["centroids"]) if ivf is not None else 0
    configs = configs or sweep(n, quick, graph is not None, ivf is not None, nlist, k)
    results = []
    if truth is not None:
        configs = [c for c in configs if c[0] != "exact"]
    if truth_cache is not None and Path(truth_cache).is_file():
        truth = torch.load(truth_cache)
        configs = [c for c in configs if c[0] != "exact"]
    for method, params in configs:
        latencies, rows_all, scored_all = [], [], []
        for start in range(0, len(qnets), batch):
            sub = qnets[start:start + batch]
            sync(device)
            t0 = time.perf_counter()
            found = run_method(method, params, sub, vectors, graph, ivf, k, source)
            rows, scored = found.rows, found.scored
            sync(device)
            latencies += [(time.perf_counter() - t0) / len(sub) * 1000] * len(sub)
            rows_all.append(rows.cpu())
            scored_all.append(scored.cpu())
        rows = torch.cat(rows_all)
        if truth is None:
            truth = rows
            if truth_cache is not None:
                torch.save(truth, truth_cache)
        row = {"label": label, "method": method, "params": params, "n": n, "queries": len(qnets),
               "recall@10": recall(rows[:len(truth)], truth, 10), "recall@100": recall(rows[:len(truth)], truth, 100),
               "docs_scored": float(torch.cat(scored_all).float().mean()),
               "p50_ms": float(np.percentile(latencies, 50)), "p95_ms": float(np.percentile(latencies, 95)),
               "peak_rss_mb": peak_rss_mb()}
        if qrels is not None:
            row["ndcg@10"] = ndcg10(rows, qids, docids, qrels)
        results.append(row)
        print_row(row)
    return results


def print_row(row):
    params = ",".join(f"{k}={v}" for k, v in row["params"].items()) or "-"
    nd = f" nDCG@10 {row['ndcg@10']:.4f}" if "ndcg@10" in row else ""
    print(f"{row['label']:>10s} {row['method']:>9s} {params:44s} R@10 {row['recall@10']:.3f} R@100 "
          f"{row['recall@100']:.3f}{nd} scored {row['docs_scored']:>10,.0f} ({row['docs_scored'] / row['n']:.2%}) "
          f"p50 {row['p50_ms']:8.1f} ms p95 {row['p95_ms']:8.1f} ms rss {row['peak_rss_mb']:,.0f} MB", flush=True)


# -- data ----------------------------------------------------------------------------------------------
def topics_of(path, limit=None):
    topics = read_topics(path)
    qids, texts = list(topics), list(topics.values())
    return (qids[:limit], texts[:limit]) if limit else (qids, texts)


def encode_queries(encoder, texts, device, bf16):
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    enc = HypencoderQueryEncoder(encoder, device=device, bf16=bf16)
    return QNetBatch.concat([enc.encode_batch(texts[i:i + 64]) for i in range(0, len(texts), 64)])


def fit_mixture(real: np.ndarray, *, components=64, seed=0):
    """A Gaussian mixture fitted to ``real``: (means, weights, Cholesky factor of the pooled within-cluster
    covariance), so that draws match the real vectors' mean and covariance."""
    import faiss
    real = np.ascontiguousarray(real, dtype=np.float32)
    c = max(1, min(components, len(real) // 40))
    km = faiss.Kmeans(real.shape[1], c, niter=20, seed=seed)
    km.train(real)
    assign = km.index.search(real, 1)[1][:, 0]
    resid = real - km.centroids[assign]
    cov = np.cov(resid, rowvar=False) + 1e-6 * np.eye(real.shape[1])
    chol = np.linalg.cholesky(cov).astype(np.float32)
    weights = np.bincount(assign, minlength=c) / len(real)
    return np.array(km.centroids), weights, chol


def mixture_chunks(real: np.ndarray, n: int, *, components=64, seed=0, chunk=100_000, lift_to=None):
    """n draws of :func:`fit_mixture`'s mixture, yielded as float32 chunks of at most ``chunk`` rows (optionally
    lifted to ``lift_to`` dimensions), so that no more than one chunk is ever in memory."""
    means, weights, chol = fit_mixture(real, components=components, seed=seed)
    d = real.shape[1]
    basis = None
    if lift_to and lift_to != d:
        basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((lift_to, d)))
        basis = basis.T.astype(np.float32)   # (d, lift_to), orthonormal rows: as lift()
    rng = np.random.default_rng(seed)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        comp = rng.choice(len(means), size=m, p=weights)
        z = rng.standard_normal((m, d), dtype=np.float32)
        out = means[comp] + z @ chol.T
        yield out @ basis if basis is not None else out


def mixture_like(real: np.ndarray, n: int, *, components=64, seed=0, chunk=100_000):
    """n vectors from a Gaussian mixture fitted to ``real`` (:func:`mixture_chunks`, in one array)."""
    return np.concatenate(list(mixture_chunks(real, n, components=components, seed=seed, chunk=chunk)))


# -- modes ---------------------------------------------------------------------------------------------
def mode_quick(args):
    n, d = 2000, 32
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, d)).astype(np.float32) * 2
    vectors = torch.from_numpy(centres[rng.integers(0, 20, n)] + rng.standard_normal((n, d)).astype(np.float32))
    qnets = random_qnets([d, d, d, 1], 64)
    t0 = time.perf_counter()
    graph = build_graph(vectors.numpy(), neighbours=16, method="exact", progress=False)
    ivf = build_ivf(vectors.numpy(), nlist=16, progress=False)
    print(f"built graph + ivf for {n} x {d} in {time.perf_counter() - t0:.2f} s")
    device = args.device
    return evaluate(qnets.to(device), vectors.to(device), torch.from_numpy(graph).to(device), ivf, k=100, quick=True,
                    label="quick")


def load_index_vectors(index_dir, device, dtype):
    from pyserini_hypencoder.index import DenseIndex
    index = DenseIndex.open(index_dir)
    return index, index.vectors.matrix(device=device, dtype=dtype)


def mode_real(args):
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    index, vectors = load_index_vectors(args.index, args.device, dtype)
    qids, texts = topics_of(args.topics, args.num_queries)
    qnets = encode_queries(args.encoder, texts, args.device, args.bf16)
    qrels = read_qrels(args.qrels) if args.qrels else None
    flat = vectors.float().cpu().numpy()
    t0 = time.perf_counter()
    graph = torch.from_numpy(build_graph(flat, neighbours=args.neighbours, method="exact", progress=False))
    t1 = time.perf_counter()
    ivf = build_ivf(flat, nlist=args.nlist, progress=False)
    print(f"{args.label}: N={index.num_docs} Q={len(qnets)}; graph build {t1 - t0:.1f} s, ivf build "
          f"{time.perf_counter() - t1:.1f} s (nlist {len(ivf['centroids'])})", flush=True)
    # the index itself (its cached matrix is ``vectors``), so that surrogate finds a faiss-ivf structure
    return evaluate(qnets, index, graph, ivf, k=args.k, qids=qids, docids=index.docids, qrels=qrels,
                    label=args.label, configs=load_configs(args.configs))


def load_configs(path):
    if not path:
        return None
    return [(c["method"], c["params"]) for c in json.loads(Path(path).read_text())]


# Runs the index CLI, then writes the child's own peak RSS (VmHWM: this process image only; ``ru_maxrss`` of a
# child also counts the parent's resident memory at fork) to the file named by argv[1].
_CHILD = """
import re, runpy, sys
out, sys.argv = sys.argv[1], ["pyserini_hypencoder.index"] + sys.argv[2:]
try:
    runpy.run_module("pyserini_hypencoder.index", run_name="__main__")
finally:
    status = open("/proc/self/status").read()
    open(out, "w").write(re.search(r"VmHWM:\\s*(\\d+)", status).group(1))
"""


def build_with_cli(index_dir, structure, extra):
    """Build a structure in a child process; returns (seconds, the child's peak RSS in MB)."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        hwm = Path(tmp) / "vmhwm_kb"
        cmd = [sys.executable, "-c", _CHILD, str(hwm), "--index", str(index_dir), "--add", structure] + extra
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        seconds = time.perf_counter() - t0
        return seconds, int(hwm.read_text()) / 1024


def lift(vectors: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """Embed d-dimensional vectors isometrically into ``dim`` dimensions (a seeded random orthonormal map)."""
    d = vectors.shape[1]
    basis, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, d)))
    return vectors @ basis.T.astype(np.float32)


def scale_qnets(args):
    """(q-nets, input dimension): a model's q-nets of real queries, or seeded random ones of a given shape."""
    if args.random_qnets:
        dims = PUBLISHED if args.random_qnets == "published" else [int(v) for v in args.random_qnets.split(",")]
        qnets = random_qnets(dims, args.num_queries or 32, seed=1)
        return qnets.to(args.device, torch.bfloat16 if args.bf16 else torch.float32), dims[0]
    if not args.topics:
        raise SystemExit("scale: --topics is needed unless --random-qnets is given")
    qnets = encode_queries(args.encoder, topics_of(args.topics, args.num_queries)[1], args.device, args.bf16)
    return qnets, qnets.input_dim


class StepMemory:
    """Wall time and peak resident memory of each step, from the process's own accounting: the peak (VmHWM of
    /proc/self/status) is reset at the start of a step (``5 > /proc/self/clear_refs``), so each step reports its
    own peak; RssAnon (heap, not the page cache of memory-mapped files) is read at its end.  Where the reset is
    not allowed the peak is the process's since it started (``ru_maxrss``), and the row says so."""

    def __init__(self):
        self.steps = {}

    @staticmethod
    def _status(field):
        import re
        try:
            found = re.search(rf"{field}:\s*(\d+)", Path("/proc/self/status").read_text())
        except OSError:
            return None
        return int(found.group(1)) / 1024 if found else None

    def step(self, name):
        import contextlib

        @contextlib.contextmanager
        def timed():
            try:
                Path("/proc/self/clear_refs").write_text("5")
                since = "step"
            except OSError:
                since = "process"
            t0 = time.perf_counter()
            yield
            peak = self._status("VmHWM") or peak_rss_mb()
            row = {"seconds": time.perf_counter() - t0, "peak_rss_mb": peak, "rss_anon_mb": self._status("RssAnon"),
                   "peak_since": since}
            self.steps[name] = row
            print(f"step {name}: {row['seconds']:.1f} s, peak RSS {peak:,.0f} MB (since {since} start), RssAnon at "
                  f"end {row['rss_anon_mb'] or 0:,.0f} MB", flush=True)
        return timed()


def write_synthetic(target, real: np.ndarray, n: int, dim: int, storage_dtype: str, source: str, chunk: int):
    """n mixture vectors written chunk by chunk through the IndexWriter (never more than a chunk in memory)."""
    from tqdm import tqdm
    from pyserini_hypencoder.index import IndexWriter
    with IndexWriter(target, dimension=dim, storage_dtype=storage_dtype, overwrite=True,
                     meta={"encoder": f"synthetic mixture like {source}"}) as writer:
        row = 0
        with tqdm(total=n, desc="synthetic vectors", unit="doc", file=sys.stderr, mininterval=10) as bar:
            for part in mixture_chunks(real, n, chunk=chunk, lift_to=dim):
                writer.add([f"s{i}" for i in range(row, row + len(part))], part)
                row += len(part)
                bar.update(len(part))


def exact_truth(qnets, vectors, k, batch, device, dtype):
    """Exact top-k rows of every q-net, in batches of ``batch`` queries over blocks of the memory map -> (rows,
    per-query milliseconds of each batch)."""
    from tqdm import tqdm
    rows, latencies = [], []
    for start in tqdm(range(0, len(qnets), batch), desc="exact ground truth", file=sys.stderr):
        sub = qnets[start:start + batch]
        sync(device)
        t0 = time.perf_counter()
        found = exact_search(sub, vectors, k)
        sync(device)
        latencies += [(time.perf_counter() - t0) / len(sub) * 1000] * len(sub)
        rows.append(found.rows.cpu())
    return torch.cat(rows), latencies


def mode_scale(args):
    from pyserini_hypencoder.index import DenseIndex
    mem = StepMemory()
    work = Path(args.work)
    with mem.step("queries"):
        qnets, dim = scale_qnets(args)
    storage = "bfloat16" if args.bf16 else "float32"
    target = work / (f"synthetic-{args.num_docs}" + (f"-lifted{dim}" if dim != DenseIndex.open(args.index).dimension
                                                     else "") + ("-bf16" if args.bf16 else ""))
    if not (target / "meta.json").is_file():
        with mem.step("generate and write vectors"):
            real = DenseIndex.open(args.index).vectors.block(0, 10 ** 9).numpy()
            write_synthetic(target, real, args.num_docs, dim, storage, args.index, args.chunk)
            del real
    index = DenseIndex.open(target)
    builds = {}
    wanted = [s for s in args.add.split(",") if s] if args.add is not None else \
        ["ivf"] + ([] if args.no_graph else ["graph"])
    for structure in wanted:
        if structure in index.structures:
            continue
        if structure == "ivf":
            extra = ["--nlist", str(args.nlist)] if args.nlist else []
        elif structure == "graph":
            extra = ["--neighbours", str(args.neighbours), "--method", "ivf", "--graph-nprobe", str(args.graph_nprobe)]
            if args.graph_nlist:
                extra += ["--graph-nlist", str(args.graph_nlist)]
        else:   # faiss-ivf
            extra = [f for f in ["--faiss-nlist", str(args.faiss_nlist) if args.faiss_nlist else None,
                                 "--faiss-encoding", args.faiss_encoding] if f]
            extra = extra if args.faiss_nlist else extra[1:]
        builds[structure] = build_with_cli(target, structure, extra + ["--threads", str(args.threads)])
        mem.steps[f"build {structure} (child process)"] = {"seconds": builds[structure][0],
                                                           "peak_rss_mb": builds[structure][1], "peak_since": "process"}
    for name, (sec, mb) in builds.items():
        print(f"build {name}: {sec:.0f} s, peak RSS of the building process {mb:,.0f} MB", flush=True)
    if args.only_build:
        return [{"label": args.label, "n": args.num_docs, "index": str(target), "steps": mem.steps,
                 "builds": {k: {"seconds": v[0], "peak_rss_mb": v[1]} for k, v in builds.items()}}]
    index = DenseIndex.open(target)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    qnets = qnets.to(args.device, dtype)
    truth_queries = min(len(qnets), args.truth_queries or len(qnets))
    cache = work / f"exact-{target.name}-{args.label}-{truth_queries}of{len(qnets)}q-k{args.k}.pt"
    exact_row = None
    if cache.is_file():
        truth = torch.load(cache)
    else:
        with mem.step("exact ground truth"):
            truth, lat = exact_truth(qnets[:truth_queries], index.vectors, args.k, args.batch, args.device, dtype)
        torch.save(truth, cache)
        exact_row = {"label": args.label, "method": "exact", "params": {}, "n": index.num_docs,
                     "queries": truth_queries, "recall@10": 1.0, "recall@100": 1.0, "docs_scored": float(index.num_docs),
                     "p50_ms": float(np.percentile(lat, 50)), "p95_ms": float(np.percentile(lat, 95)),
                     "peak_rss_mb": mem.steps["exact ground truth"]["peak_rss_mb"]}
        print_row(exact_row)
    configs = [c for c in (load_configs(args.configs) or [("surrogate", {"candidates": 1000})]) if c[0] != "exact"]
    graph = ivf = None
    if any(m in ("graph", "ivf+graph") for m, _ in configs) or any(m in ("ivf", "ivf+graph") for m, _ in configs):
        from pyserini_hypencoder.ann import load_graph, load_ivf
        graph = load_graph(index, args.device) if "graph" in index.structures else None
        ivf = load_ivf(index) if "ivf" in index.structures else None
    out = [exact_row] if exact_row else []
    for method, params in configs:
        if args.warmup:   # one untimed batch first: structures loaded, pages of the map read, kernels warm
            run_method(method, params, qnets[:args.batch], as_vectors(index), graph, ivf, args.k, index)
        with mem.step(f"{method} {params}"):
            out += evaluate(qnets, index, graph, ivf, k=args.k, batch=args.batch, label=args.label,
                            configs=[(method, params)], truth=truth)
        out[-1]["peak_rss_mb"] = mem.steps[f"{method} {params}"]["peak_rss_mb"]
    for row in out:
        row["builds"] = {k: {"seconds": v[0], "peak_rss_mb": v[1]} for k, v in builds.items()}
        row["steps"] = mem.steps
        row["truth_queries"] = truth_queries
    return out


def plot_with_pillow(rows, labels, png):
    """A plain recall-vs-latency scatter (log x) drawn with Pillow, for machines without matplotlib."""
    from PIL import Image, ImageDraw
    colors = {"exact": (31, 119, 180), "ivf": (255, 127, 14), "graph": (44, 160, 44), "ivf+graph": (214, 39, 40),
              "surrogate": (148, 103, 189)}
    w, h, pad = 420, 320, 45
    img = Image.new("RGB", (w * len(labels), h), "white")
    draw = ImageDraw.Draw(img)
    for i, label in enumerate(labels):
        pts = [r for r in rows if r["label"] == label]
        xs = [math.log10(max(r["p50_ms"], 1e-3)) for r in pts]
        x0, x1 = min(xs) - 0.1, max(xs) + 0.1
        ox = i * w
        draw.rectangle([ox + pad, 20, ox + w - 10, h - pad], outline="black")
        draw.text((ox + pad, 5), label, fill="black")
        draw.text((ox + pad, h - pad + 5), f"p50 ms, log scale: {10 ** x0:.3g} .. {10 ** x1:.3g}", fill="black")
        draw.text((ox + 2, 20), "R@100", fill="black")
        draw.text((ox + 2, h - pad - 10), "0", fill="black")
        draw.text((ox + 30, 20), "1", fill="black")
        for j, (method, color) in enumerate(colors.items()):
            draw.text((ox + pad + 5, 25 + 12 * j), method, fill=color)
        for r, x in zip(pts, xs):
            px = ox + pad + (x - x0) / (x1 - x0) * (w - pad - 10)
            py = h - pad - r["recall@100"] * (h - pad - 20)
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colors.get(r["method"], (0, 0, 0)))
    img.save(png)


def mode_plot(args):
    rows = [r for path in args.results for r in json.loads(Path(path).read_text())]
    try:
        import matplotlib
        import matplotlib.ticker
    except ImportError:  # matplotlib is optional
        plot_with_pillow(rows, sorted({r["label"] for r in rows}), args.png)
        print(f"wrote {args.png} (Pillow; install matplotlib for a nicer plot)")
        return []
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = sorted({r["label"] for r in rows})
    cols = min(3, len(labels))
    rows_n = (len(labels) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(5 * cols, 4 * rows_n), squeeze=False)
    for ax in axes.flat[len(labels):]:
        ax.set_visible(False)
    styles = (("exact", "*", "C0"), ("ivf", "o", "C1"), ("graph", "s", "C2"), ("ivf+graph", "^", "C3"),
              ("surrogate", "D", "C4"), ("surrogate, faiss-ivf", "v", "C5"))

    def series(r):   # the faiss-ivf first stage is its own series (the scan's pool differs)
        faiss = r["method"] == "surrogate" and ("nprobe" in r["params"] or r["params"].get("first_stage") == "faiss-ivf")
        return "surrogate, faiss-ivf" if faiss else r["method"]
    for ax, label in zip(axes.flat, labels):
        for method, marker, color in styles:
            pts = sorted((r["p50_ms"], r["recall@100"]) for r in rows if r["label"] == label and series(r) == method)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color,
                        linestyle="-" if method in ("ivf", "surrogate") else "none",  # one parameter: a curve
                        label=method)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("p50 latency per query (ms, batches of 32)")
        ax.set_ylabel("recall@100 vs exact")
        ax.set_title(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.png, dpi=110)
    print(f"wrote {args.png}")
    return []


def mode_table(args):
    """Markdown table of result files (for docs/speed.md)."""
    rows = [r for path in args.results for r in json.loads(Path(path).read_text())]
    has_ndcg = any("ndcg@10" in r for r in rows)
    print("| data | method | params | R@10 | R@100 |" + (" nDCG@10 |" if has_ndcg else "")
          + " docs scored / query | p50 ms | p95 ms | peak RSS MB |")
    print("|---" * (9 + has_ndcg) + "|")
    for r in rows:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items()) or "-"
        nd = f" {r['ndcg@10']:.4f} |" if has_ndcg else ""
        print(f"| {r['label']} | {r['method']} | {params} | {r['recall@10']:.3f} | {r['recall@100']:.3f} |{nd} "
              f"{r['docs_scored']:,.0f} ({r['docs_scored'] / r['n']:.1%}) | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
              f"{r['peak_rss_mb']:,.0f} |")
    return []


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small random data, seconds (CI)")
    p.add_argument("--json", default=None, help="write the result rows here")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="device of the --quick run")
    sub = p.add_subparsers(dest="mode")
    for name in ("real", "scale"):
        s = sub.add_parser(name)
        s.add_argument("--index", required=True)
        s.add_argument("--encoder", default="default")
        s.add_argument("--topics", required=name == "real")
        s.add_argument("--qrels", default=None)
        s.add_argument("--num-queries", type=int, default=None)
        s.add_argument("--label", default=name)
        s.add_argument("--k", type=int, default=100)
        s.add_argument("--neighbours", type=int, default=32)
        s.add_argument("--nlist", type=int, default=None)
        s.add_argument("--device", default="cpu")
        s.add_argument("--bf16", action="store_true")
        s.add_argument("--configs", default=None, help="JSON list of {method, params} to run instead of the sweep")
    sc = sub.choices["scale"]
    sc.add_argument("--num-docs", type=int, default=1_000_000)
    sc.add_argument("--work", required=True, help="directory for the synthetic index")
    sc.add_argument("--no-graph", action="store_true")
    sc.add_argument("--add", default=None, metavar="LIST",
                    help="structures to build, comma-separated from ivf, graph, faiss-ivf (default: ivf, and graph "
                         "unless --no-graph); '' builds none")
    sc.add_argument("--faiss-nlist", type=int, default=None, help="lists of the faiss-ivf first stage")
    sc.add_argument("--faiss-encoding", default="sq8", help="codes of the faiss-ivf first stage (sq8, fp16, flat)")
    sc.add_argument("--truth-queries", type=int, default=None,
                    help="exact ground truth (and recall) for the first this many queries only (default all)")
    sc.add_argument("--batch", type=int, default=32, help="queries per timed batch")
    sc.add_argument("--only-build", action="store_true", help="stop after writing the vectors and the structures")
    sc.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="time the first batch of each method too (default: one untimed batch first)")
    sc.add_argument("--chunk", type=int, default=262144, help="rows generated and written at a time")
    sc.add_argument("--graph-nlist", type=int, default=None,
                    help="k-means lists of the graph's neighbour search (default: reuse the IVF partition)")
    sc.add_argument("--graph-nprobe", type=int, default=4)
    sc.add_argument("--random-qnets", default=None, metavar="SHAPE",
                    help="'published' (6x768) or comma-separated dims: seeded random q-nets of that shape instead of "
                         "the encoder's (speed, and a stress test of recall); vectors are lifted to its input width")
    pl = sub.add_parser("plot")
    pl.add_argument("results", nargs="+")
    pl.add_argument("--png", required=True)
    tb = sub.add_parser("table")
    tb.add_argument("results", nargs="+")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    torch.set_num_threads(args.threads)
    try:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    if args.quick or args.mode is None:
        rows = mode_quick(args)
    else:
        rows = {"real": mode_real, "scale": mode_scale, "plot": mode_plot, "table": mode_table}[args.mode](args)
    if args.json and rows:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
