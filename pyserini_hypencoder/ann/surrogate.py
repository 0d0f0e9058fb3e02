"""Linear-surrogate candidate pools: inner-product pre-selection, exact q-net rescoring.

Each q-net gets a linear stand-in ``s_q(x) = g_q . x``: ``g_q`` is the q-net's gradient averaged over the
``anchor_top`` best-scoring of ``anchors`` sampled documents (where its top documents live).  One matrix
product ranks every document by ``g_q . x`` (the cost of a bi-encoder search, a few hundred times cheaper per
document than a q-net), and the q-net scores the best ``candidates`` of them exactly.  The closer a q-net is
to linear around its top documents, the fewer candidates it needs; ``candidates >= N`` is exact search.
Needs no structure beyond the vectors; with a faiss-ivf structure (:mod:`.faiss_ip`, ``--add faiss-ivf``) the
pre-selection probes its ``nprobe`` best inverted lists instead of scanning all N vectors, and the vectors are
read row by row from the index's memory map (no whole-matrix copy).
"""
from __future__ import annotations

import torch

from .. import topk
from ..index.vectors import as_vectors
from ..model.qnet import QNetBatch
from ..strategies import STRATEGIES
from .faiss_ip import FAISS_IVF
from ._common import GATHER_BUDGET, sample_rows, score_rows

_DEFAULTS = STRATEGIES["surrogate"].defaults
# Rows per inner-product block (bounds the (Q, block) score matrix).
IP_BLOCK = 65536


def surrogate_vectors(qnets: QNetBatch, anchors: torch.Tensor, anchor_top: int) -> torch.Tensor:
    """(Q, d) float32: each q-net's input gradient averaged over its ``anchor_top`` best-scoring anchors."""
    if anchor_top <= 0:
        raise ValueError(f"anchor_top must be positive, got {anchor_top}")
    net = qnets.to(compute_dtype=torch.float32)
    x = anchors.to(device=net.device, dtype=torch.float32)
    with torch.no_grad():
        best = torch.topk(net.score(x), min(anchor_top, x.shape[0]), dim=1).indices
    points = x[best].requires_grad_(True)  # (Q, m, d)
    with torch.enable_grad():
        grad, = torch.autograd.grad(net.forward(points).sum(), points)
    return grad.mean(1)


@torch.no_grad()
def inner_product_topk(matrix: torch.Tensor, queries: torch.Tensor, m: int) -> torch.Tensor:
    """Rows of the ``m`` largest ``queries @ matrix.T`` per query -> (Q, m) int64, scanned in blocks."""
    w = queries.to(matrix.dtype).T.contiguous()  # (d, Q)
    return topk.running(lambda start, stop: (matrix[start:stop] @ w).float().T, matrix.shape[0], queries.shape[0],
                        m, IP_BLOCK, matrix.device)[1]


@torch.no_grad()
def surrogate_search(qnets: QNetBatch, vectors, k: int, *, candidates: int = _DEFAULTS["candidates"],
                     anchors: int = _DEFAULTS["anchors"], anchor_top: int = _DEFAULTS["anchor_top"],
                     seed: int = _DEFAULTS["seed"], first_stage: str = _DEFAULTS["first_stage"],
                     nprobe: int = _DEFAULTS["nprobe"]) -> topk.TopK:
    """Approximate top-k of ``vectors`` (an index, Vectors, array or tensor): the q-net rescores the
    ``candidates`` best documents by its linear surrogate -> TopK, k' = min(k, N) columns.  ``scored`` counts
    candidates plus anchors (the inner-product scan of all N documents is not counted).

    ``first_stage``: ``scan`` (all N inner products), ``faiss-ivf`` (the index's faiss-ivf structure, ``nprobe``
    lists per query), or ``auto``: faiss-ivf when ``vectors`` is an index that records one, else scan."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")
    if first_stage not in ("auto", "scan", FAISS_IVF):
        raise ValueError(f"surrogate first_stage must be auto, scan or {FAISS_IVF}, got {first_stage!r}")
    has_faiss = callable(getattr(vectors, "has_structure", None)) and vectors.has_structure(FAISS_IVF)
    if first_stage == FAISS_IVF or (first_stage == "auto" and has_faiss):
        return _faiss_first_stage(qnets, vectors, k, candidates=candidates, anchors=anchors, anchor_top=anchor_top,
                                  seed=seed, nprobe=nprobe)
    matrix = as_vectors(vectors).matrix(device=qnets.device, dtype=qnets.compute_dtype)
    n = matrix.shape[0]
    m = min(n, max(int(candidates), k))
    if m >= n:  # every document is a candidate: exact search, no surrogate needed
        block = qnets.config.block_rows(max(qnets.spec.vector_dimensions), len(qnets), matrix.device)
        scores, top_rows = topk.running(lambda start, stop: qnets.score(matrix[start:stop]), n, len(qnets), k,
                                        block, matrix.device)
        scored = n
    else:
        if anchors <= 0:
            raise ValueError(f"anchors must be positive, got {anchors}")
        rows = torch.as_tensor(sample_rows(n, anchors, seed), device=matrix.device)
        pool = inner_product_topk(matrix, surrogate_vectors(qnets, matrix[rows], anchor_top), m)
        scores, top_rows = topk.trim(*topk.select(score_rows(qnets, matrix, pool), pool, k, pad=True), k, n)
        scored = m + int(rows.numel())
    return topk.TopK(scores, top_rows, torch.full((len(qnets),), scored, device=matrix.device))


def _faiss_first_stage(qnets: QNetBatch, index, k: int, *, candidates: int, anchors: int, anchor_top: int,
                       seed: int, nprobe: int) -> topk.TopK:
    """surrogate_search with the index's faiss-ivf structure as the pre-selection (rows read from the map)."""
    from .faiss_ip import faiss_ip_topk, load_faiss_ivf
    if not callable(getattr(index, "structure_file", None)):
        raise ValueError(f"surrogate first_stage {FAISS_IVF} needs an index with that structure")
    if anchors <= 0:
        raise ValueError(f"anchors must be positive, got {anchors}")
    vectors, device, dtype = as_vectors(index), qnets.device, qnets.compute_dtype
    n = vectors.num_rows
    m = min(n, max(int(candidates), k))
    sample = sample_rows(n, anchors, seed)
    g = surrogate_vectors(qnets, vectors.rows(sample, device=device, dtype=dtype), anchor_top)
    pool = faiss_ip_topk(load_faiss_ivf(index), g, m, nprobe)   # (Q, m), -1 past the probed lists
    q, d = pool.shape[0], vectors.dimension
    scores = torch.full((q, m), float("-inf"), device=device)
    step = max(1, GATHER_BUDGET // max(1, m * d * 4))
    for start in range(0, q, step):   # the candidates of a few queries at a time, gathered from the map
        rows = pool[start:start + step]
        cands = vectors.rows(rows.clamp(min=0).reshape(-1).cpu().numpy(), device=device, dtype=dtype)
        scores[start:start + step] = qnets[start:start + step].score_candidates(cands.view(len(rows), m, d))
    scores.masked_fill_(pool < 0, float("-inf"))
    top_scores, top_rows = topk.trim(*topk.select(scores, pool, k, pad=True), k, n)
    scored = (pool >= 0).sum(1) + len(sample)
    return topk.TopK(top_scores, top_rows, scored.to(device))
