"""Score fusion of two ranked lists, with the arithmetic of Pyserini's ``HybridSearcher``, and a searcher shaped
like it over a HypencoderSearcher and a LuceneSearcher.

``score = alpha * sparse + dense`` (``weight_on_dense``: ``sparse + alpha * dense``); a document missing from one
list takes that list's lowest score; ``normalization`` first maps each list's scores to
``(s - (min + max) / 2) / (max - min)``.  Unlike Pyserini, ties are ordered by printed score, then docid, so the
same inputs always give the same run.
"""
from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

from ..._compat import DenseSearchResult
from ...formats.runs import rank_hits

Hits = Sequence[Tuple[str, float]]


def _scaled(hits: Dict[str, float], normalization: bool) -> Tuple[Dict[str, float], float]:
    """The scores (centred min-max scaled with ``normalization``) and the score of a missing document."""
    if not hits:
        return {}, 0.0
    low, high = min(hits.values()), max(hits.values())
    if not normalization:
        return hits, low
    scale = lambda s: (s - (low + high) / 2) / (high - low) if high > low else 0.0   # noqa: E731
    return {d: scale(s) for d, s in hits.items()}, scale(low)


def fuse(dense: Hits, sparse: Hits, *, alpha: float = 0.1, k: int = 1000, normalization: bool = False,
         weight_on_dense: bool = False) -> List[Tuple[str, float]]:
    """The ``k`` best ``(docid, score)`` of the union of two hit lists, fused as Pyserini's ``HybridSearcher``."""
    dense_scores, dense_missing = _scaled(dict(dense), normalization)
    sparse_scores, sparse_missing = _scaled(dict(sparse), normalization)
    weights = (1.0, alpha) if weight_on_dense else (alpha, 1.0)
    fused = {docid: weights[0] * sparse_scores.get(docid, sparse_missing) + weights[1] * dense_scores.get(docid,
                                                                                                     dense_missing)
             for docid in {**dense_scores, **sparse_scores}}
    return rank_hits(fused.items())[:k]


class HypencoderHybridSearcher:
    """Pyserini's ``HybridSearcher`` interface: ``search`` and ``batch_search`` fuse the ``k0`` best hits of a
    dense searcher (a HypencoderSearcher) and a sparse one (a LuceneSearcher) into the ``k`` best."""

    def __init__(self, dense_searcher, sparse_searcher):
        self.dense_searcher = dense_searcher
        self.sparse_searcher = sparse_searcher

    def search(self, query: str, k0: int = 10, k: int = 10, alpha: float = 0.1, normalization: bool = False,
               weight_on_dense: bool = False) -> List[DenseSearchResult]:
        return self.batch_search([query], ["q"], k0, k, 1, alpha, normalization, weight_on_dense)["q"]

    def batch_search(self, queries: List[str], q_ids: List[str], k0: int = 10, k: int = 10, threads: int = 1,
                     alpha: float = 0.1, normalization: bool = False,
                     weight_on_dense: bool = False) -> Dict[str, List[DenseSearchResult]]:
        dense = self.dense_searcher.batch_search(queries, q_ids, k0, threads)
        sparse = self.sparse_searcher.batch_search(queries, q_ids, k0, threads)
        return {qid: [DenseSearchResult(d, s) for d, s in fuse([(h.docid, h.score) for h in dense[qid]],
                                                               [(h.docid, h.score) for h in sparse.get(qid, [])],
                                                               alpha=alpha, k=k, normalization=normalization,
                                                               weight_on_dense=weight_on_dense)]
                for qid in q_ids}
