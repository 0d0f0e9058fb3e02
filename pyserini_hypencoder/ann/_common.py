"""Pieces shared by the approximate strategies: scoring each query's own candidate rows, and row bookkeeping."""
from __future__ import annotations

import numpy as np
import torch

from ..model.qnet import QNetBatch

# Bytes of gathered candidate vectors scored at once (the rest is chunked over queries).
GATHER_BUDGET = 256 * 2 ** 20


def partition_size(vectors, nlist, default, what: str):
    """``(Vectors, N, d, nlist)`` for a k-means partition of ``vectors``: ``nlist`` or ``default(N)``, checked to lie
    in [1, N] (``what`` names the structure in the one-line ValueError)."""
    from ..index.vectors import as_vectors
    vectors = as_vectors(vectors)
    n, d = vectors.num_rows, vectors.dimension
    if n == 0:
        raise ValueError(f"cannot build {what} of an empty index")
    nlist = int(nlist or default(n))
    if not 1 <= nlist <= n:
        raise ValueError(f"{what} nlist must lie in [1, {n}] for {n} documents, got {nlist}")
    return vectors, n, d, nlist


def sample_rows(n: int, count: int, seed: int) -> np.ndarray:
    """``min(count, n)`` distinct rows of ``range(n)``, sorted, from a private seeded RNG."""
    return np.sort(np.random.default_rng(seed).choice(n, size=max(0, min(int(count), n)), replace=False))


def score_rows(qnets: QNetBatch, matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Scores of each query's own rows: rows (Q, M) int64 with -1 padding -> (Q, M) float32, -inf at padding."""
    q, m = rows.shape
    out = torch.full((q, m), float("-inf"), device=rows.device)
    if m == 0 or q == 0:
        return out
    per_query = max(1, m * matrix.shape[1] * matrix.element_size())
    step = max(1, GATHER_BUDGET // per_query)
    for start in range(0, q, step):
        stop = min(q, start + step)
        r = rows[start:stop]
        out[start:stop] = qnets[start:stop].score_candidates(matrix[r.clamp(min=0)])
    return out.masked_fill_(rows < 0, float("-inf"))


def compact_rows(rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Move each row's valid entries to the front (order kept), -1 after, trimmed to the widest row."""
    if rows.numel() == 0:
        return rows
    order = torch.sort((~valid).to(torch.int8), dim=1, stable=True).indices
    out = torch.gather(rows.masked_fill(~valid, -1), 1, order)
    width = int(valid.sum(1).max().item()) if valid.numel() else 0
    return out[:, :width]


def unique_rows(rows: torch.Tensor) -> torch.Tensor:
    """Per row, replace repeated ids (and -1) by -1, keeping one copy of each id."""
    if rows.numel() == 0:
        return rows
    srt, order = torch.sort(rows, dim=1)
    dup = torch.zeros_like(srt, dtype=torch.bool)
    dup[:, 1:] = srt[:, 1:] == srt[:, :-1]
    keep_sorted = ~dup & (srt >= 0)
    keep = torch.empty_like(keep_sorted).scatter_(1, order, keep_sorted)
    return rows.masked_fill(~keep, -1)
