"""Document vectors, read one way: by block, by row positions or whole, as tensors of a chosen dtype and device.

:class:`Vectors` wraps what holds them: the read-only memory map of an index directory, an in-memory numpy array
(float32, float16, or uint16 holding bfloat16 bits) or a torch tensor.  Every strategy, the reranker and the
structure builders read document vectors through it, so stored dtypes are decoded in one place (:func:`decode`).
"""
from __future__ import annotations

from typing import Iterable, Optional, Tuple, Union

import numpy as np
import torch

Rows = Union[np.ndarray, Iterable[int]]


def decode(stored: np.ndarray) -> torch.Tensor:
    """Stored rows as a tensor sharing their memory: float32/float16 as they are, uint16 as bfloat16 bits."""
    stored = np.ascontiguousarray(stored)
    if stored.dtype == np.uint16:
        return torch.from_numpy(stored.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(stored)


_STORED_AS = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16,
              np.dtype(np.uint16): torch.bfloat16}


def mapped_matrix(data, dtype: torch.dtype) -> Optional[torch.Tensor]:
    """The rows of a memory-mapped file as a tensor over the map itself (no copy, copy-on-write so the file never
    changes) when they are stored in ``dtype``; None otherwise.  Its pages are the kernel's cache, not the heap."""
    if not isinstance(data, np.memmap) or not getattr(data, "filename", None) or _STORED_AS.get(data.dtype) != dtype:
        return None
    if not data.flags.c_contiguous or data.size == 0:
        return None
    return decode(np.memmap(data.filename, dtype=data.dtype, mode="c", offset=data.offset, shape=data.shape))


class Vectors:
    """(N, d) document vectors.  Reads return copies; ``matrix()`` keeps one whole matrix (the last device and dtype
    asked for) until :meth:`clear_cache`, so approximate strategies convert an index once per process; where an
    index's map already holds that dtype on the CPU the matrix is the map itself, so nothing is copied."""

    def __init__(self, data: Union[np.ndarray, torch.Tensor]):
        if data.ndim != 2:
            raise ValueError(f"document vectors must be (N, d), got shape {tuple(data.shape)}")
        self._data = data
        self._matrix: Optional[Tuple[tuple, torch.Tensor]] = None

    @property
    def num_rows(self) -> int:
        return int(self._data.shape[0])

    def __len__(self) -> int:
        return self.num_rows

    @property
    def dimension(self) -> int:
        return int(self._data.shape[1])

    @property
    def stored(self) -> Union[np.ndarray, torch.Tensor]:
        """The vectors as held (for an index: the memory map of its stored dtype)."""
        return self._data

    def _tensor(self, selection) -> torch.Tensor:
        if isinstance(self._data, torch.Tensor):
            return self._data[selection]
        return decode(np.array(self._data[selection]))   # a private, aligned copy of the mapped rows

    def block(self, start: int, stop: int, *, device="cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Rows [start, stop) (clipped to [0, N)) as a (stop - start, d) tensor."""
        start, stop = max(0, int(start)), min(self.num_rows, int(stop))
        return self._tensor(slice(start, max(start, stop))).to(device=device, dtype=dtype)

    def rows(self, rows: Rows, *, device="cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The given row positions (any order, repeats allowed, no -1) as a (len(rows), d) tensor."""
        idx = np.asarray(rows, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_rows):
            raise IndexError(f"row positions must lie in [0, {self.num_rows})")
        order = np.argsort(idx, kind="stable")   # sorted reads are kinder to a memory map
        picked = self._tensor(idx[order])
        out = torch.empty_like(picked)
        out[torch.from_numpy(order)] = picked
        return out.to(device=device, dtype=dtype)

    def matrix(self, *, device="cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """All rows as one (N, d) tensor, cached: a second call with the same device and dtype returns it again.
        Read-only by contract (a tensor over the map keeps writes private to the process)."""
        key = (str(torch.device(device)), dtype)
        if self._matrix is None or self._matrix[0] != key:
            self._matrix = None   # one copy in memory at a time
            view = mapped_matrix(self._data, dtype) if torch.device(device).type == "cpu" else None
            self._matrix = (key, view if view is not None else self.block(0, self.num_rows, device=device, dtype=dtype))
        return self._matrix[1]

    def clear_cache(self) -> None:
        self._matrix = None

    def numpy(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as a float32 numpy array (what FAISS builds take)."""
        return self.block(start, stop).numpy()


def as_vectors(source) -> Vectors:
    """The :class:`Vectors` of an index (anything with a ``vectors`` attribute), or of an array or tensor."""
    if isinstance(source, Vectors):
        return source
    if isinstance(getattr(source, "vectors", None), Vectors):
        return source.vectors
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return Vectors(source)
    raise TypeError(f"expected an index, Vectors, a numpy array or a tensor, got {type(source).__name__}")
