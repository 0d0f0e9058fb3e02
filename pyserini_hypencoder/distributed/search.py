"""Shards held by Ray actors: :class:`RayShardedSearcher`, the searcher whose every shard lives in one actor.

Each actor memory-maps its shard once (on whichever node Ray places it: the shard's path must be readable
there).  Per query batch the driver encodes the q-nets once, puts them in Ray's object store once, and every
actor scores its shard and returns its top k (rows numbered in the whole collection); the driver merges them and
orders the run as the local searcher does.  Exact search scores the whole collection's blocks
(:func:`~pyserini_hypencoder.search.exact.exact_search_slice`), so the run is the local sharded search's, byte for
byte; graph and ivf walk each shard's own structure, as the local sharded searcher does.
"""
from __future__ import annotations

import logging
from typing import Optional

from ..index import DenseIndex, ShardedIndex
from ..search import HypencoderSearcher
from ..search.exact import block_rows, exact_search_slice
from ..search.sharded import merge_shard_results
from ..strategies import get_strategy
from ..topk import TopK
from ._ray import connect

logger = logging.getLogger(__name__)

PLACE_TIMEOUT_S = 300
MAX_RESTARTS = 3   # a shard actor whose process or node dies is restarted (and its call retried) this often


class ShardWorker:
    """One shard, memory-mapped in a Ray actor: ``search`` -> (scores, collection rows, documents scored)."""

    def __init__(self, path: str, offset: int, total: int, threads: int):
        import torch
        torch.set_num_threads(max(1, int(threads)))
        self.index = DenseIndex.open(path)
        self.offset, self.total = int(offset), int(total)

    def search(self, qnets, k: int, strategy: str, params: dict, block: int):
        if strategy == "exact":
            found = exact_search_slice(qnets, self.index, k, offset=self.offset, total=self.total, block=block)
            return found.scores, found.rows, found.scored
        found = get_strategy(strategy).load()(qnets, self.index, k, **params)
        rows = found.rows.masked_fill(found.rows < 0, -1 - self.offset) + self.offset
        return found.scores, rows, found.scored

    def ping(self):
        import os
        return os.getpid()


class RayShardedSearcher(HypencoderSearcher):
    place_timeout_s = PLACE_TIMEOUT_S

    """:class:`HypencoderSearcher` over shards (a ShardedIndex, or one index as a single shard) held by Ray actors.

    ``ray``: the address ``ray.init`` takes (None or ``"local"``: a local instance); ``cpus_per_shard``: CPUs each
    shard actor reserves (its torch threads).  Strategies: exact, graph and ivf (each shard its own structure);
    surrogate needs every vector in one process and is refused.  :meth:`close` ends the actors."""

    def __init__(self, index_dir, query_encoder, *, ray: Optional[str] = None,
                 cpus_per_shard: Optional[float] = None, **kwargs):
        super().__init__(index_dir, query_encoder, **kwargs)
        if self.strategy.name == "surrogate":
            raise ValueError("--strategy surrogate ranks by inner products over every vector in one process; "
                             "with --ray use exact, graph or ivf")
        ray_module = connect(ray)
        shards = self.index.shards if isinstance(self.index, ShardedIndex) else [self.index]
        offsets = self.index.offsets if isinstance(self.index, ShardedIndex) else [0]
        cpus = ray_module.cluster_resources().get("CPU", 1)
        if cpus_per_shard is None:   # every shard placed at once, even with more shards than CPUs
            nodes = [n["Resources"].get("CPU", 0) for n in ray_module.nodes() if n.get("Alive")] or [cpus]
            per_node = -(-len(shards) // len(nodes))
            cpus_per_shard = min(1.0, int(100 * min(nodes) / per_node) / 100) or 0.01
        actor = ray_module.remote(num_cpus=cpus_per_shard, max_restarts=MAX_RESTARTS,
                                  max_task_retries=MAX_RESTARTS)(ShardWorker)
        self._actors = [actor.options(scheduling_strategy="SPREAD").remote(
            str(shard.path.resolve()), offset, self.index.num_docs, max(1, int(cpus_per_shard)))
            for shard, offset in zip(shards, offsets)]
        self._ray = ray_module
        try:   # every shard opened (errors surface here)
            ray_module.get([a.ping.remote() for a in self._actors], timeout=self.place_timeout_s)
        except ray_module.exceptions.GetTimeoutError:
            self.close()
            raise ValueError(f"the {len(shards)} shard actors ({cpus_per_shard:g} CPUs each) were not all placed "
                             f"within {self.place_timeout_s} s on a cluster of {cpus:g} CPUs") from None
        self._search = self._search_actors
        logger.info("searching %d shards in %d Ray actors", len(shards), len(self._actors))

    def _search_actors(self, qnets, index, k: int, **params):
        block = block_rows(qnets, params.get("block_size"))
        ref = self._ray.put(qnets)   # the batch's q-nets, sent once to every shard
        calls = [a.search.remote(ref, k, self.strategy.name, params, block) for a in self._actors]
        results = self._ray.get(calls)
        return merge_shard_results(((0, TopK(*r)) for r in results), len(qnets), k)

    def close(self) -> None:
        for actor in getattr(self, "_actors", []):
            self._ray.kill(actor)
        self._actors = []

    def __repr__(self) -> str:
        return f"RayShardedSearcher({self.index!r}, strategy={self.strategy.name!r}, actors={len(self._actors)})"
