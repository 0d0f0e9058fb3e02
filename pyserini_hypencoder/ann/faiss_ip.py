"""A faiss inverted-file inner-product index over the document vectors: the surrogate's first stage.

The surrogate ranks documents by an inner product ``g_q . x`` (:mod:`.surrogate`); scanning all N vectors for it
grows with N.  ``python -m pyserini_hypencoder.index --index DIR --add faiss-ivf`` builds an ``IndexIVF`` with
``METRIC_INNER_PRODUCT`` (k-means on a sample, codes 8-bit scalar-quantised by default: a quarter of fp32), added
chunk by chunk from the index's memory map so that building never holds more than the codes and one chunk.
``--strategy surrogate`` uses it when the index records it (``nprobe`` lists per query); the q-net still rescores
the candidates exactly from the index's own vectors, so the codes only choose candidates.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from .._fsutil import atomic_path
from ._common import partition_size, sample_rows

logger = logging.getLogger(__name__)

FAISS_IVF = "faiss-ivf"           # the structure's name in meta.json and on the command line
FAISS_IVF_FILE = "faiss-ivf.index"
ENCODINGS = {"sq8": "SQ8", "fp16": "SQfp16", "flat": "Flat"}   # --faiss-encoding -> faiss index_factory codes


def default_faiss_nlist(n: int) -> int:
    """About sqrt(N) lists (a power of two), at most N / 39 so that k-means has points to fit."""
    return int(max(1, min(2 ** round(math.log2(max(1.0, math.sqrt(n)))), n // 39 or 1)))


def build_faiss_ivf(vectors, *, nlist: Optional[int] = None, encoding: str = "sq8", niter: int = 10,
                    train_size: Optional[int] = None, chunk: int = 262144, seed: int = 1234, progress: bool = True):
    """An IVF inner-product faiss index of ``vectors`` (an index, Vectors, array or tensor); row i has id i."""
    import faiss

    if encoding not in ENCODINGS:
        raise ValueError(f"unknown faiss-ivf encoding {encoding!r}; expected one of {', '.join(ENCODINGS)}")
    vectors, n, d, nlist = partition_size(vectors, nlist, default_faiss_nlist, "a faiss-ivf index")
    started = time.time()
    train_size = int(train_size or min(n, max(64 * nlist, 65536)))
    sample = np.ascontiguousarray(vectors.rows(sample_rows(n, train_size, seed)).numpy(), dtype=np.float32)
    index = faiss.index_factory(d, f"IVF{nlist},{ENCODINGS[encoding]}", faiss.METRIC_INNER_PRODUCT)
    index.cp.niter = int(niter)
    index.cp.seed = int(seed)
    index.cp.max_points_per_centroid = max(256, len(sample) // nlist + 1)
    index.train(sample)
    del sample
    for start in tqdm(range(0, n, chunk), desc="faiss-ivf: add", disable=not progress, leave=False):
        block = np.ascontiguousarray(vectors.numpy(start, min(n, start + chunk)))
        index.add_with_ids(block, np.arange(start, start + len(block), dtype=np.int64))
    logger.info("built a faiss IVF%d,%s inner-product index of %d documents in %.1f s", nlist, ENCODINGS[encoding],
                n, time.time() - started)
    return index


def add_faiss_ivf(index, *, nlist: Optional[int] = None, encoding: str = "sq8", niter: int = 10,
                  train_size: Optional[int] = None, seed: int = 1234, progress: bool = True) -> dict:
    """Build the faiss-ivf index of a DenseIndex, write it atomically and record it in meta.json."""
    import faiss

    built = build_faiss_ivf(index, nlist=nlist, encoding=encoding, niter=niter, train_size=train_size, seed=seed,
                            progress=progress)
    with atomic_path(index.path / FAISS_IVF_FILE) as tmp:
        faiss.write_index(built, str(tmp))
    info = {"file": FAISS_IVF_FILE, "nlist": int(built.nlist), "encoding": encoding, "metric": "ip",
            "num_docs": int(index.num_docs), "niter": int(niter), "seed": int(seed)}
    if train_size:
        info["train_size"] = int(train_size)
    index.record_structure(FAISS_IVF, info)
    return info


def load_faiss_ivf(index):
    """The faiss-ivf index of a DenseIndex (read once per index object)."""
    def read():
        import faiss
        file = index.structure_file(FAISS_IVF)
        loaded = faiss.read_index(str(file))
        if loaded.ntotal != index.num_docs or loaded.d != index.dimension:
            raise ValueError(f"{file} holds {loaded.ntotal} x {loaded.d} vectors, the index {index.num_docs} x "
                             f"{index.dimension}; rebuild it with: {index.add_command(FAISS_IVF)}")
        return loaded
    return index.cached(FAISS_IVF, read)


def faiss_ip_topk(faiss_index, queries: torch.Tensor, m: int, nprobe: int) -> torch.Tensor:
    """Rows of (about) the ``m`` largest ``queries @ x`` per query -> (Q, m) int64 on the queries' device, -1
    where the probed lists held fewer than ``m`` documents."""
    if nprobe <= 0:
        raise ValueError(f"nprobe must be positive, got {nprobe}")
    import faiss
    q = np.ascontiguousarray(queries.detach().float().cpu().numpy())
    params = faiss.SearchParametersIVF(nprobe=min(int(nprobe), faiss_index.nlist))
    _, rows = faiss_index.search(q, int(m), params=params)
    return torch.from_numpy(rows).to(queries.device)
