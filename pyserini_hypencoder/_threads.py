"""Scoped torch CPU thread counts."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch


@contextlib.contextmanager
def torch_threads(threads: Optional[int], device="cpu"):
    """Run the block with ``threads`` torch CPU threads; ``None``, a non-CPU device or the current count: no-op."""
    if threads is None or torch.device(device).type != "cpu" or threads == torch.get_num_threads():
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)
