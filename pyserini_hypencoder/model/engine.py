"""How :class:`~pyserini_hypencoder.model.qnet.QNetBatch` schedules its work (the maths lives in ``qnet.py``).

Two engines compute the same scores (docs/speed.md): ``per_query``, the default, runs each q-net over cache-sized
chunks with the queries split over single-threaded Python workers (86-95% of the GEMM peak on this project's
CPUs; on CUDA each q-net takes the whole block), and ``batched`` runs all queries and documents in one pass
(33-62%: memory-bound).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import torch

ENGINES = ("per_query", "batched")
# Bytes of (block, width) fp32 activations per exact-search block: the read size and the top-k merge interval
# (64 MiB: 21,845 rows at width 768, 43,690 at 384; the batched engine divides it by Q).
ACTIVATION_BUDGET = 64 * 2 ** 20


@dataclass(frozen=True)
class ScoringConfig:
    """``engine``: None picks the fastest for the device; ``parallel_queries``: spread queries over CPU worker
    threads; ``fuse_last_block``: fold the last block's layer norm, residual and final product into one reduction;
    ``chunk_elements``: rows x width of the activations one q-net works on at a time (cache-resident)."""

    engine: Optional[str] = None
    parallel_queries: bool = True
    fuse_last_block: bool = True
    chunk_elements: int = 2 ** 20

    def __post_init__(self):
        self.engine_for(None)   # an unknown engine fails here

    def engine_for(self, device: Optional[torch.device], engine: Optional[str] = None) -> str:
        """The engine to run on ``device``: ``engine`` if given, else the configured one, else the fastest."""
        chosen = engine or self.engine or "per_query"
        if chosen not in ENGINES:
            raise ValueError(f"unknown scoring engine {chosen!r}; expected one of {', '.join(ENGINES)}")
        return chosen

    def chunk_rows(self, width: int) -> int:
        """Rows one q-net scores per call in the per_query engine."""
        return max(64, self.chunk_elements // max(1, width))

    def block_rows(self, width: int, queries: int, device: torch.device) -> int:
        """Documents per exact-search block for q-nets of hidden ``width``."""
        per_row = 4 * width * (queries if self.engine_for(device) == "batched" else 1)
        return int(max(256, ACTIVATION_BUDGET // per_row))


DEFAULT_CONFIG = ScoringConfig()

_POOL_LOCK = threading.Lock()
_POOLS: dict = {}


def run_over_queries(q: int, work: Callable[[range], None], config: ScoringConfig = DEFAULT_CONFIG) -> None:
    """Call ``work(query_ids)`` on disjoint subsets of ``range(q)``, in parallel CPU workers where that helps.

    Workers run with one torch thread each; the process setting comes back afterwards.  Only the main thread
    fans out (a worker, or a second caller meanwhile, runs its work inline)."""
    threads = torch.get_num_threads()
    if (not config.parallel_queries or threads <= 1 or q <= 1
            or threading.current_thread() is not threading.main_thread() or not _POOL_LOCK.acquire(blocking=False)):
        work(range(q))
        return
    try:
        workers = min(threads, q)
        pool = _POOLS.get(workers)
        if pool is None:
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="qnet")
        torch.set_num_threads(1)
        try:
            for future in [pool.submit(work, range(w, q, workers)) for w in range(workers)]:
                future.result()
        finally:
            torch.set_num_threads(threads)
    finally:
        _POOL_LOCK.release()
