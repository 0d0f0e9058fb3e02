"""Document neighbour graph (N x K int32, L2 over document vectors, built with FAISS) and batched graph search.

Search semantics (spec section 4.4).  ``variant="reference"`` (default) follows the original code: every
iteration scores all current candidates, offers the best max(n_candidates, k) to the result set, expands the
neighbours of only the best ``n_candidates``, stops early when nothing entered the result set, and the next
candidates are only the newly reached neighbours.  ``variant="paper"`` is Algorithm 1: only the best
``n_candidates`` are offered and expanded, and the search stops when the best candidate scores below the
worst result of a full result set.  Both run Q queries at once with integer rows, a (Q, N) visited mask and
tensor top-k merges; entry points come from a private RNG.
"""
from __future__ import annotations

import logging
import time
from typing import Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from ..model.qnet import QNetBatch
from ._common import (compact_rows, finish, full_matrix, index_path, missing_structure, num_docs,
                      record_structure, save_array_atomic, score_rows, topk_padded, torch_threads, unique_rows)

logger = logging.getLogger(__name__)

GRAPH_FILE = "graph.npy"
EXACT_MAX_DOCS = 200_000  # "auto" builds exactly up to this many documents, with an IVF index above
VARIANTS = ("reference", "paper")
# Search defaults (see docs/speed.md for the measurements behind them).
DEFAULTS = dict(entry_points=1000, n_candidates=64, max_iter=16, early_stop=True, variant="reference", seed=43)


# -- building ------------------------------------------------------------------------------------------
def _drop_self(found: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own id (or its last entry when absent) and keep k columns."""
    self_hit = found == ids[:, None]
    no_self = ~self_hit.any(1)
    self_hit[no_self, -1] = True
    order = np.argsort(self_hit, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(found, order, axis=1)


def build_graph(vectors, *, neighbours: int = 100, method: str = "auto", batch_size: int = 4096,
                nlist: Optional[int] = None, nprobe: int = 16, hnsw_m: int = 32, ef_construction: int = 64,
                ef_search: int = 128, train_size: int = 200_000, seed: int = 1234, progress: bool = True
                ) -> np.ndarray:
    """(N, K) int32 nearest-neighbour rows by L2 (self excluded; -1 padding when N - 1 < K).

    ``method``: "exact" (faiss IndexFlatL2), "ivf" (IndexIVFFlat, ``nlist`` lists, ``nprobe`` probed),
    "hnsw" (IndexHNSWFlat) or "auto" (exact up to 200,000 documents, ivf above).
    """
    import faiss

    if isinstance(vectors, torch.Tensor):
        vectors = vectors.float().cpu().numpy()
    n = num_docs(vectors)
    if neighbours <= 0:
        raise ValueError(f"neighbours must be positive, got {neighbours}")
    method = "exact" if method == "auto" and n <= EXACT_MAX_DOCS else ("ivf" if method == "auto" else method)
    if method not in ("exact", "ivf", "hnsw"):
        raise ValueError(f"unknown graph method {method!r}; expected auto, exact, ivf or hnsw")
    k = min(neighbours, max(n - 1, 0))
    d = vectors.dimension if hasattr(vectors, "dimension") else vectors.shape[1]
    read = (lambda a, b: vectors.block(a, b).numpy()) if hasattr(vectors, "block") else \
        (lambda a, b: np.ascontiguousarray(vectors[a:b], dtype=np.float32))
    graph = np.full((n, neighbours), -1, dtype=np.int32)
    if k == 0:
        return graph
    start_time = time.time()
    if method == "exact":
        index = faiss.IndexFlatL2(d)
    elif method == "hnsw":
        index = faiss.IndexHNSWFlat(d, hnsw_m)
        index.hnsw.efConstruction = ef_construction
    else:
        nlist = int(nlist or max(1, min(n // 39, int(4 * np.sqrt(n)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(n, size=min(n, max(train_size, 39 * nlist)), replace=False))
        index.train(np.ascontiguousarray(read_rows(vectors, sample)))
        index.nprobe = min(nprobe, nlist)
    for start in tqdm(range(0, n, batch_size), desc=f"graph: add ({method})", disable=not progress, leave=False):
        index.add(read(start, min(n, start + batch_size)))
    if method == "hnsw":
        index.hnsw.efSearch = max(ef_search, k + 1)
    for start in tqdm(range(0, n, batch_size), desc=f"graph: search ({method})", disable=not progress):
        stop = min(n, start + batch_size)
        _, found = index.search(read(start, stop), k + 1)
        graph[start:stop, :k] = _drop_self(found, np.arange(start, stop), k)
    logger.info("built a %d x %d neighbour graph (%s) in %.1f s", n, neighbours, method, time.time() - start_time)
    return graph


def read_rows(vectors, rows: np.ndarray) -> np.ndarray:
    if hasattr(vectors, "rows"):
        return vectors.rows(rows).numpy()
    return np.asarray(vectors[rows], dtype=np.float32)


def add_graph(index, *, neighbours: int = 100, method: str = "auto", **build_options) -> dict:
    """Build the neighbour graph of a DenseIndex, write ``graph.npy`` atomically and record it in meta.json."""
    path = index_path(index)
    graph = build_graph(index, neighbours=neighbours, method=method, **build_options)
    save_array_atomic(path / GRAPH_FILE, lambda f: np.save(f, graph))
    resolved = "exact" if method == "auto" and index.num_docs <= EXACT_MAX_DOCS else \
        ("ivf" if method == "auto" else method)
    relevant = {"exact": (), "ivf": ("nlist", "nprobe", "train_size", "seed"),
                "hnsw": ("hnsw_m", "ef_construction", "ef_search")}[resolved]
    info = {"file": GRAPH_FILE, "neighbours": int(graph.shape[1]), "metric": "l2", "method": resolved,
            "num_docs": int(index.num_docs),
            **{k: v for k, v in build_options.items() if k in relevant and v is not None}}
    record_structure(index, "graph", info)
    return info


def has_graph(index) -> bool:
    path = getattr(index, "path", None)
    structures = (getattr(index, "meta", None) or {}).get("structures") or {}
    return path is not None and "graph" in structures and (path / structures["graph"].get("file", GRAPH_FILE)).is_file()


def load_graph(index, device="cpu") -> torch.Tensor:
    """The (N, K) neighbour rows of an index as an int64 tensor (cached on the index object)."""
    if not has_graph(index):
        raise missing_structure(index, "graph")
    cache = index.__dict__.setdefault("_hypencoder_graph_cache", {})
    key = str(torch.device(device))
    if key not in cache:
        file = index.path / index.meta["structures"]["graph"].get("file", GRAPH_FILE)
        graph = np.load(file, mmap_mode="r")
        if graph.ndim != 2 or graph.shape[0] != index.num_docs:
            raise ValueError(f"{file}: expected a ({index.num_docs}, K) array, got {graph.shape}; "
                             f"rebuild it with: python -m pyserini_hypencoder.index --index {index.path} --add graph")
        cache.clear()
        cache[key] = torch.from_numpy(np.asarray(graph, dtype=np.int64)).to(device)
    return cache[key]


# -- searching -----------------------------------------------------------------------------------------
def entry_rows(n: int, count: int, seed: int) -> np.ndarray:
    """``min(count, n)`` distinct rows drawn with a private RNG (the same for every query)."""
    count = max(0, min(int(count), n))
    return np.sort(np.random.default_rng(seed).choice(n, size=count, replace=False))


@torch.no_grad()
def graph_search(qnets: QNetBatch, index, k: int, *, entry_points: int = DEFAULTS["entry_points"],
                 n_candidates: int = DEFAULTS["n_candidates"], max_iter: int = DEFAULTS["max_iter"],
                 early_stop: bool = DEFAULTS["early_stop"], variant: str = DEFAULTS["variant"],
                 seed: int = DEFAULTS["seed"], initial_candidates=None, graph=None, vectors=None,
                 return_stats: bool = False):
    """Approximate top-k by walking the neighbour graph -> (scores (Q, k'), rows (Q, k')), k' = min(k, N).

    Rows that were not found are -1 with score -inf.  ``initial_candidates`` (Q, M) int rows (-1 padding),
    e.g. an IVF pool, replace the random entry points.  ``graph``/``vectors`` override the index's own
    (for benchmarks).  With ``return_stats`` a third value gives the documents scored per query (Q,).
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown graph search variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if n_candidates <= 0 or max_iter < 0 or entry_points < 0:
        raise ValueError("n_candidates must be positive and max_iter, entry_points non-negative")
    device = qnets.device
    if graph is None:
        graph = load_graph(index, device)
    graph = torch.as_tensor(graph, device=device).long()
    matrix = full_matrix(vectors if vectors is not None else index, device, qnets.compute_dtype)
    n, q = matrix.shape[0], len(qnets)
    if graph.shape[0] != n:
        raise ValueError(f"the graph has {graph.shape[0]} rows but the index has {n} documents")
    threads = torch.get_num_threads()
    with torch_threads(1, device):
        return _walk(qnets, matrix, graph, k, threads, entry_points=entry_points, n_candidates=n_candidates,
                     max_iter=max_iter, early_stop=early_stop, variant=variant, seed=seed,
                     initial_candidates=initial_candidates, return_stats=return_stats)


def _walk(qnets, matrix, graph, k, threads, *, entry_points, n_candidates, max_iter, early_stop, variant, seed,
          initial_candidates, return_stats):
    """The search loop of :func:`graph_search` (bookkeeping single-threaded, scoring on ``threads``)."""
    device = qnets.device
    n, q = matrix.shape[0], len(qnets)
    if initial_candidates is not None:
        cand = torch.as_tensor(initial_candidates, device=device).long().reshape(q, -1)
        cand = unique_rows(cand.masked_fill(cand >= n, -1))
    else:
        cand = torch.from_numpy(entry_rows(n, entry_points, seed)).to(device).expand(q, -1)
    visited = torch.zeros(q, n, dtype=torch.bool, device=device)
    qidx = torch.arange(q, device=device)[:, None]
    visited[qidx.expand_as(cand)[cand >= 0], cand[cand >= 0]] = True
    best_s = torch.full((q, k), float("-inf"), device=device)
    best_r = torch.full((q, k), -1, dtype=torch.long, device=device)
    active = torch.ones(q, dtype=torch.bool, device=device)
    scored = torch.zeros(q, dtype=torch.long, device=device)
    offer = max(n_candidates, k) if variant == "reference" else n_candidates
    for _ in range(max_iter):
        cand = cand.masked_fill(~active[:, None], -1)
        if cand.shape[1] == 0 or not bool((cand >= 0).any()):
            break
        scored += (cand >= 0).sum(1)
        with torch_threads(threads, device):
            cand_scores = score_rows(qnets, matrix, cand)
        top_s, top_r = topk_padded(cand_scores, cand, offer)
        if variant == "paper" and early_stop:  # line 7: best candidate below the worst of a full result set
            full = best_r[:, -1] >= 0
            stop = full & (top_s[:, 0] < best_s[:, -1])
            active &= ~stop
            top_r = top_r.masked_fill(stop[:, None], -1)
            top_s = top_s.masked_fill(stop[:, None], float("-inf"))
        merged_s = torch.cat([best_s, top_s], 1)
        merged_r = torch.cat([best_r, top_r], 1)
        new_s, pos = torch.topk(merged_s, k, dim=1)
        new_r = torch.gather(merged_r, 1, pos)
        inserted = ((pos >= k) & torch.isfinite(new_s)).any(1)
        best_s, best_r = new_s, new_r.masked_fill(torch.isneginf(new_s), -1)
        if variant == "reference" and early_stop:
            active &= inserted
        expand = top_r[:, :n_candidates]
        nbrs = graph[expand.clamp(min=0)].reshape(q, -1)
        nbrs = nbrs.masked_fill((expand < 0).repeat_interleave(graph.shape[1], dim=1), -1)
        nbrs = unique_rows(nbrs)
        fresh = nbrs >= 0
        fresh &= ~visited[qidx.expand_as(nbrs), nbrs.clamp(min=0)]
        fresh &= active[:, None]
        visited[qidx.expand_as(nbrs)[fresh], nbrs[fresh]] = True
        cand = compact_rows(nbrs, fresh)
        if not bool(active.any()):
            break
    scores, rows = finish(best_s, best_r, k, n)
    return (scores, rows, scored) if return_stats else (scores, rows)
