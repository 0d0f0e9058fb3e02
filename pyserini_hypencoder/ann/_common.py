"""Shared pieces of the approximate searches: vector access, padded candidate scoring, structure files."""
from __future__ import annotations

from pathlib import Path
from typing import Tuple

import numpy as np
import torch

from ..model.qnet import SEARCH_ENGINE, QNetBatch
from ..search.exact import num_rows, read_block

# Bytes of gathered candidate vectors scored at once (the rest is chunked over queries).
GATHER_BUDGET = 256 * 2 ** 20
_CACHE_ATTR = "_hypencoder_ann_cache"


def add_command(structure: str) -> str:
    return f"python -m pyserini_hypencoder.index --index DIR --add {structure}"


def missing_structure(index, structure: str) -> ValueError:
    where = getattr(index, "path", "this index")
    return ValueError(f"{where} has no {structure} structure for --search {structure}; "
                      f"add it first, run: {add_command(structure)}".replace("DIR", str(where)))


def index_path(index) -> Path:
    path = getattr(index, "path", None)
    if path is None:
        raise ValueError("approximate search needs a DenseIndex (an index directory), not a bare array")
    return Path(path)


def full_matrix(vectors, device, dtype) -> torch.Tensor:
    """All rows of an index/array/tensor as one (N, d) tensor; cached on a DenseIndex per device and dtype."""
    if not hasattr(vectors, "block"):  # an array or tensor: nothing to cache
        return read_block(vectors, 0, num_rows(vectors), device, dtype)
    cache = getattr(vectors, _CACHE_ATTR, None)
    if cache is None:
        cache = {}
        try:
            setattr(vectors, _CACHE_ATTR, cache)
        except AttributeError:
            pass
    key = (str(torch.device(device)), dtype)
    if key not in cache:
        cache.clear()  # keep one copy in memory
        cache[key] = read_block(vectors, 0, num_rows(vectors), device, dtype)
    return cache[key]


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
        out[start:stop] = qnets[start:stop].score_candidates(matrix[r.clamp(min=0)], engine=SEARCH_ENGINE)
    return out.masked_fill_(rows < 0, float("-inf"))


def topk_padded(scores: torch.Tensor, rows: torch.Tensor, k: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Best k of (Q, M) scores/rows, padded to k with -inf / -1, best first."""
    q, m = scores.shape
    keep = min(k, m)
    top, idx = torch.topk(scores, keep, dim=1) if keep else (scores[:, :0], rows[:, :0])
    top_rows = torch.gather(rows, 1, idx) if keep else rows[:, :0]
    top_rows = top_rows.masked_fill(torch.isneginf(top), -1)
    if keep < k:
        top = torch.cat([top, torch.full((q, k - keep), float("-inf"), device=scores.device)], 1)
        top_rows = torch.cat([top_rows, torch.full((q, k - keep), -1, dtype=rows.dtype, device=rows.device)], 1)
    return top, top_rows


def finish(scores: torch.Tensor, rows: torch.Tensor, k: int, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Trim to k' = min(k, N) columns (exact search's shape), keeping -inf / -1 padding where fewer were found."""
    keep = min(k, n)
    return scores[:, :keep].contiguous(), rows[:, :keep].contiguous()


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


def numpy_reader(vectors):
    """``(read(start, stop) -> float32 ndarray, dimension)`` for an index, array or tensor (for FAISS builds)."""
    if hasattr(vectors, "block"):
        return (lambda a, b: vectors.block(a, b).numpy()), int(vectors.dimension)
    return (lambda a, b: np.ascontiguousarray(vectors[a:b], dtype=np.float32)), int(vectors.shape[1])


def has_structure(index, name: str, default_file: str) -> bool:
    """Whether ``index`` (a DenseIndex) records structure ``name`` in meta.json and its file exists."""
    path = getattr(index, "path", None)
    structures = (getattr(index, "meta", None) or {}).get("structures") or {}
    return path is not None and name in structures and (path / structures[name].get("file", default_file)).is_file()
