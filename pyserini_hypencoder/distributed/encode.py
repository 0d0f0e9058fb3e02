"""Encoding on a Ray cluster: :class:`RayChunkEncoder`, a pool of Ray actors that each hold the model once and
encode whole chunks of the corpus.

The driver reads the corpus, cuts it into the same chunks a local encode uses (``--chunk-size``), sends each chunk
to an actor (round robin, at most ``2 x actors`` chunks in flight) and writes the results in corpus order through
the same resumable, atomic :class:`~pyserini_hypencoder.index.IndexWriter`.  An actor encodes a chunk exactly as a
local encode does (length-sorted batches of ``--batch-size``), so with the same chunks, batch size, device and
torch threads the vectors are the local ones, byte for byte.  An actor whose process or node dies is restarted
by Ray and its pending chunks are retried (``max_restarts`` / ``max_task_retries``); a chunk is written only when
its vectors are back, so the index is unchanged.  Plain actors rather than Ray Data ``map_batches``: the order of
the output and the chunks must be the local encode's, which Ray Data gives only with extra bookkeeping, and the
driver has to write the index anyway.
"""
from __future__ import annotations

import logging
from collections import deque
from typing import Callable, Iterable, Iterator, List, Optional

import numpy as np

from ._ray import connect

logger = logging.getLogger(__name__)

MAX_RESTARTS = 3


class EncodeWorker:
    """The document encoder, loaded once in a Ray actor: ``encode(texts)`` -> (len(texts), d) float32."""

    def __init__(self, encoder_kwargs: dict, batch_size: int, threads: int):
        import torch
        torch.set_num_threads(max(1, int(threads)))
        from ..encoders import ChunkEncoder, HypencoderDocumentEncoder
        self.chunker = ChunkEncoder(HypencoderDocumentEncoder(**encoder_kwargs), batch_size=batch_size)

    def encode(self, texts: List[str]) -> np.ndarray:
        return np.asarray(self.chunker.encode(list(texts)), dtype=np.float32)

    def pid(self) -> int:
        import os
        return os.getpid()


class RayChunkEncoder:
    """``encode_chunks`` for :func:`~pyserini_hypencoder.encode._encode.encode_corpus`: chunks of texts in, their
    vectors out in the same order, encoded by ``actors`` Ray actors (default: the cluster's CPUs divided by
    ``cpus_per_actor``; ``gpus_per_actor`` > 0 puts each actor's model on a GPU)."""

    def __init__(self, address: Optional[str], encoder_kwargs: dict, *, batch_size: int,
                 actors: Optional[int] = None, cpus_per_actor: float = 1, gpus_per_actor: float = 0):
        ray = connect(address)
        self._ray = ray
        resources = ray.cluster_resources()
        if actors is None:
            by_cpu = int(resources.get("CPU", 1) // max(cpus_per_actor, 1e-9))
            by_gpu = int(resources.get("GPU", 0) // gpus_per_actor) if gpus_per_actor else by_cpu
            actors = max(1, min(by_cpu, by_gpu))
        kwargs = dict(encoder_kwargs)
        if gpus_per_actor:
            kwargs["device"] = "cuda"
        remote = ray.remote(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor, max_restarts=MAX_RESTARTS,
                            max_task_retries=MAX_RESTARTS)(EncodeWorker)
        self.actors = [remote.options(scheduling_strategy="SPREAD").remote(kwargs, batch_size,
                                                                             max(1, int(cpus_per_actor)))
                       for _ in range(int(actors))]
        logger.info("encoding with %d Ray actors (%g CPUs, %g GPUs each)", len(self.actors), cpus_per_actor,
                    gpus_per_actor)

    def __call__(self, chunks: Iterable[List[str]], progress: Callable[[int], None]) -> Iterator[np.ndarray]:
        in_flight: deque = deque()
        for i, texts in enumerate(chunks):
            in_flight.append((len(texts), self.actors[i % len(self.actors)].encode.remote(texts)))
            if len(in_flight) >= 2 * len(self.actors):
                yield self._next(in_flight, progress)
        while in_flight:
            yield self._next(in_flight, progress)

    def _next(self, in_flight: deque, progress) -> np.ndarray:
        n, ref = in_flight.popleft()
        vectors = self._ray.get(ref)
        progress(n)
        return vectors

    def pids(self) -> List[int]:
        return self._ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
