"""Linear-surrogate candidate pools: inner-product pre-selection, exact q-net rescoring.

Each q-net gets a linear stand-in ``s_q(x) = g_q . x``: ``g_q`` is the q-net's gradient averaged over the
``anchor_top`` best-scoring of ``anchors`` sampled documents (where its top documents live).  One matrix
product ranks every document by ``g_q . x`` (the cost of a bi-encoder search, a few hundred times cheaper per
document than a q-net), and the q-net scores the best ``candidates`` of them exactly.  The closer a q-net is
to linear around its top documents, the fewer candidates it needs; ``candidates >= N`` is exact search.
Needs no structure beyond the vectors.
"""
from __future__ import annotations

import torch

from .. import topk
from ..index.vectors import as_vectors
from ..model.qnet import QNetBatch
from ..strategies import STRATEGIES
from ._common import sample_rows, score_rows

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
                     seed: int = _DEFAULTS["seed"]) -> topk.TopK:
    """Approximate top-k of ``vectors`` (an index, Vectors, array or tensor): the q-net rescores the
    ``candidates`` best documents by its linear surrogate -> TopK, k' = min(k, N) columns.  ``scored`` counts
    candidates plus anchors (the inner-product scan of all N documents is not counted)."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")
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
