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


@torch.no_grad()
def exact_search(qnets: QNetBatch, vectors, k: int, *,
                 block_size: Optional[int] = _DEFAULTS["block_size"]) -> topk.TopK:
    """Top-k rows per q-net over all ``vectors`` (an index, :class:`Vectors`, array or tensor) -> TopK with
    (Q, k') scores and rows, k' = min(k, N), best first."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    vectors = as_vectors(vectors)
    device, dtype, n = qnets.device, qnets.compute_dtype, vectors.num_rows
    block = int(block_size or qnets.config.block_rows(max(qnets.spec.vector_dimensions), len(qnets), device))
    scores, rows = topk.running(lambda start, stop: qnets.score(vectors.block(start, stop, device=device, dtype=dtype)),
                                n, len(qnets), k, block, device)
    return topk.TopK(scores, rows, torch.full((len(qnets),), n, device=device))


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
