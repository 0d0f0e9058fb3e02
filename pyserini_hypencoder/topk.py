"""Top-k over q-net scores: selection, merging, a running top-k over blocks, and the result every strategy returns.

Scores and rows are (Q, M) tensors, a row of candidates per query; row -1 (score -inf) is padding.  Equal scores
are in torch.topk's order; run files order them by printed score, then docid (``formats.runs.rank_hits``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Tuple

import torch

Pair = Tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TopK:
    """What a search strategy returns: scores (Q, k') best first, their rows (Q, k'; -1 where fewer were found) and
    ``scored``, the documents the q-nets scored per query (Q,).  Unpacks as ``scores, rows``."""

    scores: torch.Tensor
    rows: torch.Tensor
    scored: Optional[torch.Tensor] = None

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.scores, self.rows))


def select(scores: torch.Tensor, rows: torch.Tensor, k: int, *, pad: bool = False) -> Pair:
    """The best ``min(k, M)`` of each row of (Q, M) scores and their rows, best first; rows of ``-inf`` scores
    become -1; ``pad`` widens the result to k columns with ``-inf`` / -1."""
    q, m = scores.shape
    keep = min(k, m)
    if keep:
        top, idx = torch.topk(scores, keep, dim=1)
        top_rows = torch.gather(rows, 1, idx).masked_fill(torch.isneginf(top), -1)
    else:
        top, top_rows = scores[:, :0], rows[:, :0]
    if pad and keep < k:
        top = torch.cat([top, torch.full((q, k - keep), float("-inf"), device=scores.device)], 1)
        top_rows = torch.cat([top_rows, torch.full((q, k - keep), -1, dtype=rows.dtype, device=rows.device)], 1)
    return top, top_rows


def merge(scores: torch.Tensor, rows: torch.Tensor, new_scores: torch.Tensor, new_rows: torch.Tensor,
          k: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The best k of two (Q, *) sets, best first, and per query whether a finite entry of the new set got in."""
    all_scores = torch.cat([scores, new_scores], dim=1)
    keep = min(k, all_scores.shape[1])
    top, idx = torch.topk(all_scores, keep, dim=1)
    top_rows = torch.gather(torch.cat([rows, new_rows], dim=1), 1, idx).masked_fill(torch.isneginf(top), -1)
    entered = ((idx >= scores.shape[1]) & torch.isfinite(top)).any(1)
    return top, top_rows, entered


def running(score_block: Callable[[int, int], torch.Tensor], n: int, q: int, k: int, block: int, device) -> Pair:
    """Top-k over rows ``[0, n)`` scored ``block`` at a time by ``score_block(start, stop)`` -> (Q, stop - start):
    (scores (Q, k'), rows (Q, k')), k' = min(k, n), best first."""
    best_scores = torch.empty(q, 0, device=device)
    best_rows = torch.empty(q, 0, dtype=torch.long, device=device)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = torch.arange(start, stop, device=device).expand(q, -1)
        best_scores, best_rows, _ = merge(best_scores, best_rows, score_block(start, stop), rows, k)
    return best_scores, best_rows


def trim(scores: torch.Tensor, rows: torch.Tensor, k: int, n: int) -> Pair:
    """Keep k' = min(k, N) columns (exact search's shape); -inf / -1 padding stays where fewer were found."""
    keep = min(k, n)
    return scores[:, :keep].contiguous(), rows[:, :keep].contiguous()
