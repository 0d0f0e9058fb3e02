"""Exact q-net search: every document scored by every q-net, in blocks, with a running top-k."""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import numpy as np
import torch

from ..model.qnet import SEARCH_ENGINE, QNetBatch

# Bytes of (block, width) fp32 activations per block.  QNetBatch.score works through a block one query and
# one cache-sized chunk at a time, so the block size no longer scales with Q; it sets the read size and the
# top-k merge interval (64 MiB: 21,845 rows at width 768, 43,690 at 384).
ACTIVATION_BUDGET = 64 * 2 ** 20


def to_tensor(rows, device, dtype) -> torch.Tensor:
    """Rows of a numpy array (float32/float16, or uint16 holding bf16 bits) or tensor as a torch tensor."""
    if isinstance(rows, torch.Tensor):
        return rows.to(device=device, dtype=dtype)
    arr = np.ascontiguousarray(rows)
    if arr.dtype == np.uint16:  # bfloat16 bit patterns
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16).to(device=device, dtype=dtype)
    return torch.from_numpy(arr).to(device=device, dtype=dtype)


def read_block(vectors, start: int, stop: int, device, dtype) -> torch.Tensor:
    """Rows [start, stop) of an index (anything with ``block``) or an array/tensor."""
    if hasattr(vectors, "block"):
        return vectors.block(start, stop, device=device, dtype=dtype)
    return to_tensor(vectors[start:stop], device, dtype)


def num_rows(vectors) -> int:
    return int(vectors.num_docs) if hasattr(vectors, "num_docs") else int(vectors.shape[0])


def default_block_size(qnets: QNetBatch, engine: str = SEARCH_ENGINE) -> int:
    """Documents per block: the batched engine holds (Q, block, width) activations, so its block shrinks with Q."""
    width = max(qnets.spec.vector_dimensions)
    per_row = 4 * width * (len(qnets) if engine == "batched" else 1)
    return int(max(256, ACTIVATION_BUDGET // per_row))


def merge_topk(scores: torch.Tensor, rows: torch.Tensor, new_scores: torch.Tensor, new_rows: torch.Tensor,
               k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Keep the k best of two (Q, *) score/row sets."""
    all_scores = torch.cat([scores, new_scores], dim=1)
    all_rows = torch.cat([rows, new_rows], dim=1)
    keep = min(k, all_scores.shape[1])
    top, idx = torch.topk(all_scores, keep, dim=1)
    return top, torch.gather(all_rows, 1, idx)


def blocked_topk(score_block: Callable[[int, int], torch.Tensor], n: int, q: int, k: int, block: int,
                 device) -> Tuple[torch.Tensor, torch.Tensor]:
    """Running top-k over rows ``[0, n)`` scored ``block`` at a time by ``score_block(start, stop)`` -> (Q, stop -
    start) -> (scores (Q, k'), rows (Q, k')), k' = min(k, n), best first."""
    best_scores = torch.empty(q, 0, device=device)
    best_rows = torch.empty(q, 0, dtype=torch.long, device=device)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = torch.arange(start, stop, device=device).expand(q, -1)
        best_scores, best_rows = merge_topk(best_scores, best_rows, score_block(start, stop), rows, k)
    return best_scores, best_rows


@torch.no_grad()
def exact_search(qnets: QNetBatch, vectors, k: int, *, block_size: Optional[int] = None,
                 engine: str = SEARCH_ENGINE) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-k rows per q-net over all ``vectors`` -> (scores (Q, k'), rows (Q, k')), k' = min(k, N), best first."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    device = qnets.device
    return blocked_topk(
        lambda start, stop: qnets.score(read_block(vectors, start, stop, device, qnets.compute_dtype), engine=engine),
        num_rows(vectors), len(qnets), k, int(block_size or default_block_size(qnets, engine)), device)
