"""FAISS k-means (IVF) partition of the document vectors and q-net-guided candidate pools.

The q-net scores the ``nlist`` centroids; the documents of each query's best ``nprobe`` lists are scored
exactly and merged into a top-k.  With ``nprobe >= nlist`` this is exact search.
"""
from __future__ import annotations

import logging
import time
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

from .. import topk
from .._fsutil import atomic_file
from ..index.vectors import as_vectors
from ..model.qnet import QNetBatch
from ..strategies import STRATEGIES
from ._common import partition_size, sample_rows, score_rows

logger = logging.getLogger(__name__)

IVF_FILE = "ivf.npz"
_DEFAULTS = STRATEGIES["ivf"].defaults


def default_nlist(n: int) -> int:
    """About 4 sqrt(N) lists, at least 1 and at most N / 8 (so k-means has points to fit)."""
    return int(max(1, min(int(round(4 * np.sqrt(n))), n // 8)))


def build_ivf(vectors, *, nlist: Optional[int] = None, niter: int = 20, train_size: int = 256 * 1024,
              batch_size: int = 65536, seed: int = 1234, progress: bool = True) -> dict:
    """k-means partition -> {"centroids" (nlist, d) float32, "offsets" (nlist + 1,) int64, "order" (N,) int32,
    "probes" (nlist, d) float32: the vectors the q-net scores to rank lists}.

    ``order[offsets[l]:offsets[l + 1]]`` are the rows of list ``l`` (L2 assignment to the nearest centroid).
    """
    import faiss

    vectors, n, d, nlist = partition_size(vectors, nlist, default_nlist, "an IVF partition")
    start_time = time.time()
    sample = vectors.rows(sample_rows(n, train_size, seed)).numpy()
    kmeans = faiss.Kmeans(d, nlist, niter=niter, seed=seed, verbose=False,
                          max_points_per_centroid=max(256, len(sample) // nlist + 1))
    kmeans.train(np.ascontiguousarray(sample, dtype=np.float32))
    centroids = np.ascontiguousarray(kmeans.centroids, dtype=np.float32)
    quantizer = faiss.IndexFlatL2(d)
    quantizer.add(centroids)
    assign = np.empty(n, dtype=np.int64)
    # Probe vectors: each centroid rescaled to the mean norm of its members.  A mean of vectors is shorter
    # than they are, and the (non-linear) q-net ranks lists better on in-distribution norms.
    norm_sum = np.zeros(nlist, dtype=np.float64)
    for start in tqdm(range(0, n, batch_size), desc="ivf: assign", disable=not progress, leave=False):
        block = vectors.numpy(start, min(n, start + batch_size))
        assign[start:start + len(block)] = quantizer.search(block, 1)[1][:, 0]
        np.add.at(norm_sum, assign[start:start + len(block)], np.linalg.norm(block, axis=1))
    order = np.argsort(assign, kind="stable").astype(np.int32)
    counts = np.bincount(assign, minlength=nlist)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    centroid_norm = np.linalg.norm(centroids, axis=1)
    mean_norm = norm_sum / np.maximum(counts, 1)
    scale = np.where((counts > 0) & (centroid_norm > 0), mean_norm / np.maximum(centroid_norm, 1e-12), 1.0)
    probes = (centroids * scale[:, None]).astype(np.float32)
    logger.info("built an IVF partition of %d documents into %d lists in %.1f s", n, nlist, time.time() - start_time)
    return {"centroids": centroids, "offsets": offsets, "order": order, "probes": probes}


def add_ivf(index, *, nlist: Optional[int] = None, **build_options) -> dict:
    """Build the IVF partition of a DenseIndex, write ``ivf.npz`` atomically and record it in meta.json."""
    ivf = build_ivf(index, nlist=nlist, **build_options)
    with atomic_file(index.path / IVF_FILE, "wb") as f:
        np.savez(f, **ivf)
    info = {"file": IVF_FILE, "nlist": int(len(ivf["centroids"])), "metric": "l2", "num_docs": int(index.num_docs),
            **{k: v for k, v in build_options.items() if k != "progress" and v is not None}}
    index.record_structure("ivf", info)
    return info


def load_ivf(index) -> dict:
    """The IVF partition of a DenseIndex (read once per index object)."""
    def read():
        file = index.structure_file("ivf")
        with np.load(file) as data:
            ivf = {name: data[name] for name in ("centroids", "offsets", "order", "probes") if name in data}
        if ivf["order"].shape[0] != index.num_docs or ivf["offsets"][-1] != index.num_docs:
            raise ValueError(f"{file} does not match the index ({index.num_docs} documents); rebuild it with: "
                             f"{index.add_command('ivf')}")
        return ivf
    return index.cached("ivf", read)


@torch.no_grad()
def ivf_candidates(qnets: QNetBatch, ivf: dict, nprobe: int) -> torch.Tensor:
    """Each query's pool: the rows of its ``nprobe`` best-scoring lists -> (Q, M) int64, -1 padding.

    Lists are ranked by the q-net's score of their probe vector (centroid rescaled to its members' mean norm)."""
    if nprobe <= 0:
        raise ValueError(f"nprobe must be positive, got {nprobe}")
    device = qnets.device
    centroids = torch.as_tensor(np.asarray(ivf.get("probes", ivf["centroids"]), dtype=np.float32), device=device)
    offsets, order = (torch.as_tensor(np.asarray(ivf[key], dtype=np.int64), device=device) for key in ("offsets", "order"))
    nlist = centroids.shape[0]
    probe = min(nprobe, nlist)
    lists = torch.topk(qnets.score(centroids.to(qnets.compute_dtype)), probe, dim=1).indices  # (Q, P)
    starts, sizes = offsets[lists], offsets[lists + 1] - offsets[lists]  # (Q, P)
    width = int(sizes.sum(1).max().item())
    # position j of a query's pool lies in the list whose cumulative size first exceeds j
    ends = sizes.cumsum(1)
    pos = torch.arange(width, device=device).expand(len(qnets), -1).contiguous()
    which = torch.searchsorted(ends, pos, right=True)
    valid = which < probe
    which = which.clamp(max=probe - 1)
    before = torch.gather(ends - sizes, 1, which)
    src = torch.gather(starts, 1, which) + (pos - before)
    return torch.where(valid, order[src.clamp(max=order.shape[0] - 1)], torch.full_like(src, -1))


@torch.no_grad()
def probe(qnets: QNetBatch, vectors, ivf: dict, k: int, *, nprobe: int = _DEFAULTS["nprobe"]) -> topk.TopK:
    """Approximate top-k of ``vectors`` from the best ``nprobe`` lists of the partition ``ivf`` -> TopK with
    k' = min(k, N) columns; ``scored`` counts the pool and the centroids."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    matrix = as_vectors(vectors).matrix(device=qnets.device, dtype=qnets.compute_dtype)
    pool = ivf_candidates(qnets, ivf, nprobe)
    scores, rows = topk.trim(*topk.select(score_rows(qnets, matrix, pool), pool, k, pad=True), k, matrix.shape[0])
    return topk.TopK(scores, rows, (pool >= 0).sum(1) + len(ivf["centroids"]))


def ivf_search(qnets: QNetBatch, index, k: int, *, nprobe: int = _DEFAULTS["nprobe"]) -> topk.TopK:
    """Approximate top-k of a DenseIndex from its IVF partition (``python -m pyserini_hypencoder.index --add ivf``);
    with ``nprobe >= nlist`` this is exact search."""
    return probe(qnets, index, load_ivf(index), k, nprobe=nprobe)
