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
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from .. import topk
from .._fsutil import atomic_file
from .._threads import torch_threads
from ..index.vectors import as_vectors
from ..model.qnet import QNetBatch
from ..strategies import STRATEGIES
from ._common import compact_rows, sample_rows, score_rows, unique_rows
from .ivf import build_ivf, ivf_candidates, load_ivf

logger = logging.getLogger(__name__)

GRAPH_FILE = "graph.npy"
EXACT_MAX_DOCS = 200_000  # "auto" builds exactly up to this many documents, with an IVF index above
VARIANTS = STRATEGIES["graph"].param("variant").choices
# Search defaults (see docs/speed.md for the measurements behind them).
_DEFAULTS = STRATEGIES["graph"].defaults


# -- building ------------------------------------------------------------------------------------------
def _drop_self(found: np.ndarray, ids: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own id (or its last entry when absent) and keep k columns."""
    self_hit = found == ids[:, None]
    no_self = ~self_hit.any(1)
    self_hit[no_self, -1] = True
    order = np.argsort(self_hit, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(found, order, axis=1)


def build_graph(vectors, *, neighbours: int = 100, method: str = "auto", batch_size: int = 4096,
                nlist: Optional[int] = None, nprobe: int = 8, hnsw_m: int = 32, ef_construction: int = 64,
                ef_search: int = 128, train_size: int = 200_000, seed: int = 1234, progress: bool = True,
                ivf: Optional[dict] = None) -> np.ndarray:
    """(N, K) int32 nearest-neighbour rows by L2 (self excluded; -1 padding when N - 1 < K).

    ``method``: "exact" (faiss IndexFlatL2), "ivf" (faiss k-means into ``nlist`` lists, default ~sqrt(N);
    each list searched exactly against its ``nprobe`` nearest lists), "hnsw" (faiss IndexHNSWFlat) or "auto"
    (exact up to 200,000 documents, ivf above).  ``ivf`` (a :func:`build_ivf` partition) is reused by "ivf"
    instead of running k-means again.
    """
    import faiss

    vectors = as_vectors(vectors)
    n, d = vectors.num_rows, vectors.dimension
    if neighbours <= 0:
        raise ValueError(f"neighbours must be positive, got {neighbours}")
    method = "exact" if method == "auto" and n <= EXACT_MAX_DOCS else ("ivf" if method == "auto" else method)
    if method not in ("exact", "ivf", "hnsw"):
        raise ValueError(f"unknown graph method {method!r}; expected auto, exact, ivf or hnsw")
    k = min(neighbours, max(n - 1, 0))
    read = vectors.numpy
    graph = np.full((n, neighbours), -1, dtype=np.int32)
    if k == 0:
        return graph
    start_time = time.time()
    if method == "ivf":
        _ivf_graph(vectors, graph, k, n, read, nlist=nlist, nprobe=nprobe, train_size=train_size, seed=seed,
                   batch_size=batch_size, progress=progress, ivf=ivf)
    else:
        if method == "exact":
            index = faiss.IndexFlatL2(d)
        else:
            index = faiss.IndexHNSWFlat(d, hnsw_m)
            index.hnsw.efConstruction = ef_construction
        for start in tqdm(range(0, n, batch_size), desc=f"graph: add ({method})", disable=not progress,
                          leave=False):
            index.add(read(start, min(n, start + batch_size)))
        if method == "hnsw":
            index.hnsw.efSearch = max(ef_search, k + 1)
        for start in tqdm(range(0, n, batch_size), desc=f"graph: search ({method})", disable=not progress):
            stop = min(n, start + batch_size)
            _, found = index.search(read(start, stop), k + 1)
            graph[start:stop, :k] = _drop_self(found, np.arange(start, stop), k)
    logger.info("built a %d x %d neighbour graph (%s) in %.1f s", n, neighbours, method, time.time() - start_time)
    return graph


def _ivf_graph(vectors, graph, k, n, read, *, nlist, nprobe, train_size, seed, batch_size, progress, ivf=None):
    """Neighbours by list-wise exact search: k-means lists; each list's documents against the members of the
    ``nprobe`` lists whose centroids are nearest its own, as dense matrix products (fast on CPU and GPU)."""
    if ivf is None:
        nlist = int(nlist or max(1, min(n // 39, int(np.sqrt(n)))))
        ivf = build_ivf(vectors, nlist=nlist, train_size=train_size, seed=seed, batch_size=batch_size,
                        progress=progress)
    nlist = len(ivf["centroids"])
    centroids, offsets, order = ivf["centroids"], ivf["offsets"], ivf["order"].astype(np.int64)
    probe = min(nprobe, nlist)
    c = torch.from_numpy(centroids)
    near = torch.topk(torch.cdist(c, c), probe, dim=1, largest=False).indices.numpy()  # (nlist, probe)
    matrix = vectors.block(0, n)
    sq = (matrix * matrix).sum(1)
    for lst in tqdm(range(nlist), desc="graph: search (ivf lists)", disable=not progress):
        rows = order[offsets[lst]:offsets[lst + 1]]
        if len(rows) == 0:
            continue
        cand = np.concatenate([order[offsets[j]:offsets[j + 1]] for j in near[lst]])
        cand_t, rows_t = torch.from_numpy(cand), torch.from_numpy(rows)
        dist = sq[rows_t, None] - 2 * matrix[rows_t] @ matrix[cand_t].T + sq[None, cand_t]
        dist[rows_t[:, None] == cand_t[None, :]] = float("inf")  # never its own neighbour
        kk = min(k, len(cand) - 1)
        if kk <= 0:
            continue
        idx = torch.topk(dist, kk, dim=1, largest=False).indices
        found = cand_t[idx]
        found[torch.isinf(torch.gather(dist, 1, idx))] = -1
        graph[rows, :kk] = found.numpy().astype(np.int32)


def add_graph(index, *, neighbours: int = 100, method: str = "auto", **build_options) -> dict:
    """Build the neighbour graph of a DenseIndex, write ``graph.npy`` atomically and record it in meta.json."""
    resolved = "exact" if method == "auto" and index.num_docs <= EXACT_MAX_DOCS else \
        ("ivf" if method == "auto" else method)
    reuse = None
    if resolved == "ivf" and build_options.get("nlist") is None:
        if index.has_structure("ivf"):  # the index's own IVF partition: no second k-means
            reuse = load_ivf(index)
            logger.info("graph: reusing the index's IVF partition (%d lists)", len(reuse["centroids"]))
    graph = build_graph(index, neighbours=neighbours, method=method, ivf=reuse, **build_options)
    with atomic_file(index.path / GRAPH_FILE, "wb") as f:
        np.save(f, graph)
    relevant = {"exact": (), "ivf": ("nlist", "nprobe", "train_size", "seed"),
                "hnsw": ("hnsw_m", "ef_construction", "ef_search")}[resolved]
    info = {"file": GRAPH_FILE, "neighbours": int(graph.shape[1]), "metric": "l2", "method": resolved,
            "num_docs": int(index.num_docs),
            **{k: v for k, v in build_options.items() if k in relevant and v is not None}}
    if reuse is not None:
        info["nlist"] = int(len(reuse["centroids"]))
    index.record_structure("graph", info)
    return info


def load_graph(index, device="cpu") -> torch.Tensor:
    """The (N, K) neighbour rows of a DenseIndex as an int64 tensor on ``device`` (read once per index object)."""
    def read():
        file = index.structure_file("graph")
        graph = np.load(file, mmap_mode="r")
        if graph.ndim != 2 or graph.shape[0] != index.num_docs:
            raise ValueError(f"{file}: expected a ({index.num_docs}, K) array, got {graph.shape}; "
                             f"rebuild it with: {index.add_command('graph')}")
        return torch.from_numpy(np.asarray(graph, dtype=np.int64)).to(device)
    return index.cached(f"graph@{torch.device(device)}", read)


# -- searching -----------------------------------------------------------------------------------------
def graph_search(qnets: QNetBatch, index, k: int, *, entry_points: int = _DEFAULTS["entry_points"],
                 n_candidates: int = _DEFAULTS["n_candidates"], max_iter: int = _DEFAULTS["max_iter"],
                 early_stop: bool = _DEFAULTS["early_stop"], variant: str = _DEFAULTS["variant"],
                 seed: int = _DEFAULTS["seed"], ivf_nprobe: Optional[int] = _DEFAULTS["ivf_nprobe"]) -> topk.TopK:
    """Approximate top-k of a DenseIndex by walking its neighbour graph (``--add graph``): see :func:`walk`.

    ``ivf_nprobe`` seeds the walk with each query's pool from its best ``ivf_nprobe`` IVF lists (the index needs
    ``--add ivf`` too) instead of the shared entry points; ``scored`` then counts the IVF centroids too."""
    initial, extra = None, 0
    if ivf_nprobe is not None:
        ivf = load_ivf(index)
        initial, extra = ivf_candidates(qnets, ivf, ivf_nprobe), len(ivf["centroids"])
    found = walk(qnets, index, load_graph(index, qnets.device), k, entry_points=entry_points,
                 n_candidates=n_candidates, max_iter=max_iter, early_stop=early_stop, variant=variant, seed=seed,
                 initial_candidates=initial)
    return topk.TopK(found.scores, found.rows, found.scored + extra)


@torch.no_grad()
def walk(qnets: QNetBatch, vectors, graph, k: int, *, entry_points: int = _DEFAULTS["entry_points"],
         n_candidates: int = _DEFAULTS["n_candidates"], max_iter: int = _DEFAULTS["max_iter"],
         early_stop: bool = _DEFAULTS["early_stop"], variant: str = _DEFAULTS["variant"],
         seed: int = _DEFAULTS["seed"], initial_candidates=None) -> topk.TopK:
    """Approximate top-k of ``vectors`` (an index, Vectors, array or tensor) over the (N, K) neighbour rows
    ``graph`` -> TopK with k' = min(k, N) columns; rows not found are -1 with score -inf.

    ``initial_candidates`` (Q, M) int rows (-1 padding) replace the shared random entry points.  ``scored``
    counts the documents each query scored."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if variant not in VARIANTS:
        raise ValueError(f"unknown graph search variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if n_candidates <= 0 or max_iter < 0 or entry_points < 0:
        raise ValueError("n_candidates must be positive and max_iter, entry_points non-negative")
    device = qnets.device
    graph = torch.as_tensor(graph, device=device).long()
    matrix = as_vectors(vectors).matrix(device=device, dtype=qnets.compute_dtype)
    if graph.shape[0] != matrix.shape[0]:
        raise ValueError(f"the graph has {graph.shape[0]} rows but the index has {matrix.shape[0]} documents")
    threads = torch.get_num_threads()   # the loop's bookkeeping runs single-threaded, its scoring on these
    with torch_threads(1, device):
        return _walk(qnets, matrix, graph, k, threads, entry_points, n_candidates, max_iter, early_stop, variant,
                     seed, initial_candidates)


def _walk(qnets, matrix, graph, k, threads, entry_points, n_candidates, max_iter, early_stop, variant, seed,
          initial_candidates):
    device, n, q = qnets.device, matrix.shape[0], len(qnets)
    if initial_candidates is not None:
        cand = torch.as_tensor(initial_candidates, device=device).long().reshape(q, -1)
        cand = unique_rows(cand.masked_fill(cand >= n, -1))
    else:
        cand = torch.from_numpy(sample_rows(n, entry_points, seed)).to(device).expand(q, -1)
    visited = torch.zeros(q, n, dtype=torch.bool, device=device)
    qidx = torch.arange(q, device=device)[:, None]
    visited[qidx.expand_as(cand)[cand >= 0], cand[cand >= 0]] = True
    best_s = torch.full((q, k), float("-inf"), device=device)
    best_r = torch.full((q, k), -1, dtype=torch.long, device=device)
    active = torch.ones(q, dtype=torch.bool, device=device)
    scored = torch.zeros(q, dtype=torch.long, device=device)
    offer = max(n_candidates, k) if variant == "reference" else n_candidates
    shared = initial_candidates is None  # the first candidates are the same rows for every query
    for _ in range(max_iter):
        cand = cand.masked_fill(~active[:, None], -1)
        if cand.shape[1] == 0 or not bool((cand >= 0).any()):
            break
        scored += (cand >= 0).sum(1)
        with torch_threads(threads, device):
            cand_scores = qnets.score(matrix[cand[0]]) if shared else score_rows(qnets, matrix, cand)
        shared = False
        top_s, top_r = topk.select(cand_scores, cand, offer, pad=True)
        if variant == "paper" and early_stop:  # line 7: best candidate below the worst of a full result set
            full = best_r[:, -1] >= 0
            stop = full & (top_s[:, 0] < best_s[:, -1])
            active &= ~stop
            top_r = top_r.masked_fill(stop[:, None], -1)
            top_s = top_s.masked_fill(stop[:, None], float("-inf"))
        best_s, best_r, inserted = topk.merge(best_s, best_r, top_s, top_r, k)
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
    return topk.TopK(*topk.trim(best_s, best_r, k, n), scored)
