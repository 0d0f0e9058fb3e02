"""Searching shards one by one and merging their top-k: for structures built per shard (graph, ivf), and for the
shard actors of a Ray search.  Row numbers are those of the :class:`~pyserini_hypencoder.index.ShardedIndex`
(each shard's rows shifted by its offset)."""
from __future__ import annotations

from typing import Callable, Iterable, Tuple

import torch

from .. import topk
from ..model.qnet import QNetBatch


def merge_shard_results(results: Iterable[Tuple[int, topk.TopK]], q: int, k: int) -> topk.TopK:
    """One TopK from ``(offset, TopK over that shard's rows)`` pairs: rows shifted to the whole collection, the
    best k kept (ties are put in run order later, by printed score and docid), documents scored summed."""
    scores = torch.empty(q, 0)
    rows = torch.empty(q, 0, dtype=torch.long)
    scored = torch.zeros(q, dtype=torch.long)
    for offset, found in results:
        shard_rows = found.rows.cpu().long()
        shard_rows = torch.where(shard_rows >= 0, shard_rows + int(offset), shard_rows)
        scores, rows, _ = topk.merge(scores, rows, found.scores.float().cpu(), shard_rows, k)
        if found.scored is not None:
            scored += found.scored.cpu().long()
    return topk.TopK(scores, rows, scored)


def search_each_shard(search: Callable, qnets: QNetBatch, index, k: int, **params) -> topk.TopK:
    """``search(qnets, shard, k, **params)`` on every shard of ``index`` (a ShardedIndex), merged."""
    return merge_shard_results(((offset, search(qnets, shard, k, **params))
                                for offset, shard in zip(index.offsets, index.shards)), len(qnets), k)
