"""Linear-surrogate candidate pools: inner-product pre-selection, exact q-net rescoring.

Each q-net gets a linear stand-in ``s_q(x) = g_q . x``: ``g_q`` is the q-net's gradient averaged over the
``anchor_top`` best-scoring of ``anchors`` sampled documents (where its top documents live).  One matrix
product ranks every document by ``g_q . x`` (the cost of a bi-encoder search, a few hundred times cheaper per
document than a q-net), and the q-net scores the best ``candidates`` of them exactly.  The closer a q-net is
to linear around its top documents, the fewer candidates it needs; ``candidates >= N`` is exact search.
Needs no structure beyond the vectors.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.qnet import SEARCH_ENGINE, QNetBatch
from ..search.exact import blocked_topk, exact_search
from ._common import finish, full_matrix, score_rows, topk_padded

DEFAULTS = dict(candidates=1000, anchors=256, anchor_top=32, seed=0)
# Rows per inner-product block (bounds the (Q, block) score matrix).
IP_BLOCK = 65536


def anchor_rows(n: int, anchors: int, seed: int) -> np.ndarray:
    """``min(n, anchors)`` distinct document rows, sorted, from a private seeded RNG."""
    if anchors <= 0:
        raise ValueError(f"anchors must be positive, got {anchors}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=min(n, anchors), replace=False))


def surrogate_vectors(qnets: QNetBatch, anchors: torch.Tensor, anchor_top: int) -> torch.Tensor:
    """(Q, d) float32: each q-net's input gradient averaged over its ``anchor_top`` best-scoring anchors."""
    if anchor_top <= 0:
        raise ValueError(f"anchor_top must be positive, got {anchor_top}")
    net = qnets.to(compute_dtype=torch.float32)
    x = anchors.to(device=net.device, dtype=torch.float32)
    with torch.no_grad():
        best = torch.topk(net.score(x, engine=SEARCH_ENGINE), min(anchor_top, x.shape[0]), dim=1).indices
    points = x[best].requires_grad_(True)  # (Q, m, d)
    with torch.enable_grad():
        grad, = torch.autograd.grad(net.forward(points).sum(), points)
    return grad.mean(1)


@torch.no_grad()
def inner_product_topk(matrix: torch.Tensor, queries: torch.Tensor, m: int) -> torch.Tensor:
    """Rows of the ``m`` largest ``queries @ matrix.T`` per query -> (Q, m) int64, scanned in blocks."""
    w = queries.to(matrix.dtype).T.contiguous()  # (d, Q)
    return blocked_topk(lambda start, stop: (matrix[start:stop] @ w).float().T, matrix.shape[0], queries.shape[0],
                        m, IP_BLOCK, matrix.device)[1]


@torch.no_grad()
def surrogate_search(qnets: QNetBatch, index, k: int, *, candidates: int = DEFAULTS["candidates"],
                     anchors: int = DEFAULTS["anchors"], anchor_top: int = DEFAULTS["anchor_top"],
                     seed: int = DEFAULTS["seed"], vectors=None, return_stats: bool = False):
    """Approximate top-k: the q-net rescores the ``candidates`` best documents by its linear surrogate
    -> (scores (Q, k'), rows (Q, k')), k' = min(k, N).

    ``vectors`` overrides the index's own (for benchmarks); with ``return_stats`` a third value gives the
    documents the q-nets scored per query (Q,): candidates plus anchors (the inner-product scan of all N
    documents is not counted).
    """
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    if candidates <= 0:
        raise ValueError(f"candidates must be positive, got {candidates}")
    matrix = full_matrix(vectors if vectors is not None else index, qnets.device, qnets.compute_dtype)
    n = matrix.shape[0]
    m = min(n, max(int(candidates), k))
    if m >= n:  # every document is a candidate: exact search, no surrogate needed
        scores, top_rows = exact_search(qnets, matrix, k)
        scored = n
    else:
        rows = torch.as_tensor(anchor_rows(n, anchors, seed), device=matrix.device)
        pool = inner_product_topk(matrix, surrogate_vectors(qnets, matrix[rows], anchor_top), m)
        scores, top_rows = finish(*topk_padded(score_rows(qnets, matrix, pool), pool, k), k, n)
        scored = m + int(rows.numel())
    if return_stats:
        return scores, top_rows, torch.full((len(qnets),), scored, device=matrix.device)
    return scores, top_rows
