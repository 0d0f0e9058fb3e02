"""Exact q-net search: every document scored by every q-net, one block at a time, with a running top-k; and the
run order of its results (ties at the cut completed, then printed score and docid), shared by the searcher, dev
evaluation during training and ``train.evaluate``."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .. import topk
from ..formats.runs import printed_score, rank_hits
from ..index.vectors import as_vectors
from ..model.qnet import QNetBatch
from ..strategies import STRATEGIES

_DEFAULTS = STRATEGIES["exact"].defaults


def block_rows(qnets: QNetBatch, block_size: Optional[int] = None) -> int:
    """Documents per exact-search block: ``block_size``, or sized from the q-net width (``ScoringConfig``)."""
    return int(block_size or qnets.config.block_rows(max(qnets.spec.vector_dimensions), len(qnets), qnets.device))


@torch.no_grad()
def exact_search(qnets: QNetBatch, vectors, k: int, *,
                 block_size: Optional[int] = _DEFAULTS["block_size"]) -> topk.TopK:
    """Top-k rows per q-net over all ``vectors`` (an index, :class:`Vectors`, array or tensor) -> TopK with
    (Q, k') scores and rows, k' = min(k, N), best first."""
    vectors = as_vectors(vectors)
    return exact_search_slice(qnets, vectors, k, offset=0, total=vectors.num_rows, block=block_rows(qnets, block_size))


@torch.no_grad()
def exact_search_slice(qnets: QNetBatch, vectors, k: int, *, offset: int, total: int, block: int) -> topk.TopK:
    """Exact search of ``vectors`` held as rows [offset, offset + n) of a collection of ``total`` rows (a shard),
    rows numbered in the collection.  The blocks are the whole collection's (every ``block`` rows from row 0), and a
    block reaching past the shard is scored at its full size with zero rows in place of the other shards' (their
    scores dropped), so each document's score is computed on the same tensor shape at the same position as in
    :func:`exact_search` of the whole collection: the same bits, whatever shard holds it."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    vectors = as_vectors(vectors)
    device, dtype, n = qnets.device, qnets.compute_dtype, vectors.num_rows
    if offset < 0 or offset + n > total:
        raise ValueError(f"rows [{offset}, {offset + n}) do not lie in a collection of {total}")

    def score(start: int, stop: int) -> torch.Tensor:   # collection rows [start, stop), all inside the shard
        outer_start = start // block * block
        outer_stop = min(total, outer_start + block)
        part = vectors.block(start - offset, stop - offset, device=device, dtype=dtype)
        if (outer_start, outer_stop) == (start, stop):
            return qnets.score(part)
        full = torch.zeros(outer_stop - outer_start, vectors.dimension, device=device, dtype=dtype)
        full[start - outer_start:stop - outer_start] = part
        return qnets.score(full)[:, start - outer_start:stop - outer_start]

    q = len(qnets)
    best_scores = torch.empty(q, 0, device=device)
    best_rows = torch.empty(q, 0, dtype=torch.long, device=device)
    bounds = sorted({offset, offset + n, *range((offset // block + 1) * block, offset + n, block)})
    for start, stop in zip(bounds, bounds[1:]):
        rows = torch.arange(start, stop, device=device).expand(q, -1)
        best_scores, best_rows, _ = topk.merge(best_scores, best_rows, score(start, stop), rows, k)
    return topk.TopK(best_scores, best_rows, torch.full((q,), n, device=device))


def complete_ties(search: Callable[[int], topk.TopK], k: int, n: int) -> topk.TopK:
    """``search(depth)`` deep enough that every document whose printed score ties the k-th best is in, so the
    run order (printed score, then docid) can pick among them: from k + 8, doubling while the k-th printed score
    equals the last one kept."""
    want = min(k, n)
    depth = min(n, want + 8)
    while True:
        found = search(depth)
        printed = printed_score(found.scores.float().cpu().numpy())
        if depth >= n or not bool((printed[:, want - 1] == printed[:, -1]).any()):
            return found
        depth = min(n, depth * 2)


def ranked_hits(found: topk.TopK, docids: Sequence[str], k: int) -> List[List[Tuple[str, float]]]:
    """Each query's ``(docid, score)`` hits in run order (printed score, then docid), at most k, padding dropped."""
    scores, rows = found.scores.float().cpu().numpy(), found.rows.cpu().numpy()
    return [rank_hits((docids[r], s) for s, r in zip(srow.tolist(), rrow.tolist()) if r >= 0 and np.isfinite(s))[:k]
            for srow, rrow in zip(scores, rows)]
