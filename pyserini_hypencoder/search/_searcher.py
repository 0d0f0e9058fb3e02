"""HypencoderSearcher: Pyserini's ``FaissSearcher`` interface over q-net scoring of an index directory."""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from .._compat import DenseSearchResult, PrfDenseSearchResult

from .._threads import torch_threads as scoped_threads
from ..index import DenseIndex
from ..model.qnet import QNetBatch
from ..runfiles import printed_score, rank_hits
from .exact import exact_search

logger = logging.getLogger(__name__)

SEARCH_MODES = ("exact", "graph", "ivf", "surrogate")
# Queries encoded and scored together inside batch_search (bounds memory for long query lists).
QUERY_CHUNK = 64


def torch_threads(threads: Optional[int]):
    """Use ``threads`` torch CPU threads inside the block.  ``None`` or 1 (Pyserini's default) keeps the process
    setting (``torch.set_num_threads``, the CLIs' ``--threads``), so the default never slows a search down."""
    return scoped_threads(threads if threads and threads > 1 else None)


def _encoder_identity(encoder) -> Tuple[Optional[str], Optional[str]]:
    name = getattr(encoder, "encoder_name", None)
    fingerprint = getattr(encoder, "fingerprint", None)
    return (str(name) if name is not None else None), (str(fingerprint) if fingerprint else None)


def _encoder_dimension(encoder) -> Optional[int]:
    model = getattr(encoder, "model", None)
    spec = getattr(model, "spec", None)
    return int(spec.input_dim) if spec is not None else None


def open_index(index: Union[str, DenseIndex]) -> DenseIndex:
    return index if isinstance(index, DenseIndex) else DenseIndex.open(index)


def check_compatible(index: DenseIndex, query_encoder, *, force: bool = False) -> None:
    """Dimension (always) and encoder fingerprint (unless ``force``) of ``index`` against ``query_encoder``."""
    name, fingerprint = _encoder_identity(query_encoder)
    dimension = _encoder_dimension(query_encoder)
    # the document side is hashed only if the full fingerprints differ (it re-reads the backbone's weights)
    index.check_encoder(name, fingerprint, force=force, dimension=dimension,
                        document_fingerprint=lambda: getattr(query_encoder, "document_fingerprint", None))
    if fingerprint is None and index.meta.get("encoder_fingerprint") and not force:
        raise ValueError(f"{index.path}: the query encoder has no fingerprint to compare with the index's "
                         f"({index.meta['encoder_fingerprint']}); pass --force (force=True) to search anyway")


class HypencoderSearcher:
    """Search an index directory with q-nets, the way Pyserini's ``FaissSearcher`` searches a faiss index.

    Parameters
    ----------
    index_dir : str, Path or DenseIndex
        Index directory written by ``python -m pyserini_hypencoder.encode`` (``index``, ``docid``, ``meta.json``).
    query_encoder : HypencoderQueryEncoder or str
        The encoder (or a checkpoint path / ``"default"``, loaded on the CPU) that turns queries into q-nets.
    force : bool
        Search even when meta.json names other encoder weights (a dimension mismatch is always an error).
    search : {"exact", "graph", "ivf", "surrogate"}
        Exact scoring of every document, or an approximate strategy from :mod:`pyserini_hypencoder.ann`.
    search_params : dict
        Keyword arguments for the approximate strategy (e.g. its candidate and iteration counts).
    block_size : int
        Documents per scoring block in exact search (default: sized from the q-net width).
    """

    def __init__(self, index_dir, query_encoder, *, force: bool = False, search: str = "exact",
                 search_params: Optional[dict] = None, block_size: Optional[int] = None):
        if search not in SEARCH_MODES:
            raise ValueError(f"unknown search strategy {search!r}; expected one of {', '.join(SEARCH_MODES)}")
        self.index = open_index(index_dir)
        if isinstance(query_encoder, str):
            from ..encoders import HypencoderQueryEncoder
            query_encoder = HypencoderQueryEncoder(query_encoder)
        self.query_encoder = query_encoder
        check_compatible(self.index, query_encoder, force=force)
        self.search_mode = search
        self.search_params = dict(search_params or {})
        self.block_size = block_size
        self._strategy = self._resolve_strategy(search)

    # -- Pyserini's attributes ---------------------------------------------------------------------------------
    @property
    def docids(self) -> List[str]:
        return self.index.docids

    @property
    def num_docs(self) -> int:
        return self.index.num_docs

    @property
    def dimension(self) -> int:
        return self.index.dimension

    def __repr__(self) -> str:
        return f"HypencoderSearcher({self.index!r}, search={self.search_mode!r})"

    # -- strategies --------------------------------------------------------------------------------------------
    def _resolve_strategy(self, search: str):
        if search == "exact":
            return None
        try:
            from .. import ann
        except ImportError as exc:
            raise ValueError(f"search={search!r} needs the pyserini_hypencoder.ann module, which cannot be "
                             f"imported ({exc})") from None
        function = getattr(ann, f"{search}_search", None)
        if function is None:
            raise ValueError(f"pyserini_hypencoder.ann has no {search}_search function")
        has = getattr(ann, f"has_{search}", None)
        if has is not None and not has(self.index):
            raise ValueError(f"{self.index.path}: the index has no {search} structure; run: "
                             f"python -m pyserini_hypencoder.index --index {self.index.path} --add {search}")
        import inspect
        internal = ("return_stats", "vectors", "graph", "ivf", "initial_candidates")   # for benchmarks and tests
        accepted = [name for name, p in inspect.signature(function).parameters.items()
                    if p.kind == p.KEYWORD_ONLY and name not in internal]
        unknown = sorted(set(self.search_params) - set(accepted))
        if unknown:
            raise ValueError(f"unknown {search} search parameter {unknown[0]!r}; expected one of "
                             f"{', '.join(accepted)}")
        return function

    def _top(self, qnets: QNetBatch, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of the k best documents per q-net, ties at the k-th place resolved by docid."""
        if self._strategy is not None:
            scores, rows = self._strategy(qnets, self.index, k, **self.search_params)
            return _as_numpy(scores), _as_numpy(rows)
        n = self.index.num_docs
        want = min(k, n)
        depth = min(n, want + 8)
        while True:
            scores, rows = map(_as_numpy, exact_search(qnets, self.index, depth, block_size=self.block_size))
            # The k-th score (as printed) shared with the last one kept: a tie may reach past the cut; fetch deeper.
            printed = printed_score(scores)
            if depth >= n or not bool((printed[:, want - 1] == printed[:, -1]).any()):
                return scores, rows
            depth = min(n, depth * 2)

    def _results(self, scores: np.ndarray, rows: np.ndarray, k: int, with_vectors: bool = False) -> list:
        docids = self.index.docids
        hits = rank_hits((docids[r], float(s)) for s, r in zip(scores.tolist(), rows.tolist())
                         if r >= 0 and np.isfinite(s))[:k]
        if not with_vectors:
            return [DenseSearchResult(docid, score) for docid, score in hits]
        row_of = {docids[r]: r for r in rows.tolist() if r >= 0}
        vectors = self.index.rows([row_of[docid] for docid, _ in hits]).numpy()
        return [PrfDenseSearchResult(docid, score, vector) for (docid, score), vector in zip(hits, vectors)]

    def _encode(self, queries: Sequence[Union[str, QNetBatch]]) -> QNetBatch:
        if all(isinstance(q, QNetBatch) for q in queries):
            return QNetBatch.concat(list(queries))
        if any(isinstance(q, QNetBatch) for q in queries):
            raise ValueError("mix of query texts and pre-encoded q-nets in one batch")
        return self.query_encoder.encode_batch(list(queries))

    def _search_qnets(self, qnets: QNetBatch, k: int, with_vectors: bool = False) -> List[list]:
        if self.index.num_docs == 0:
            return [[] for _ in range(len(qnets))]
        scores, rows = self._top(qnets, k)
        return [self._results(scores[i], rows[i], k, with_vectors) for i in range(len(qnets))]

    # -- Pyserini's API ----------------------------------------------------------------------------------------
    def search(self, query: Union[str, QNetBatch], k: int = 10, threads: int = 1, remove_dups: bool = False,
               return_vector: bool = False):
        """The ``k`` best documents for one query (text or a pre-encoded q-net), best first.

        ``threads`` > 1 sets torch's CPU threads for this call; 1 keeps the process setting.  As in Pyserini,
        ``return_vector=True`` returns ``(query, hits)``: the query's q-net (a one-query ``QNetBatch``, the
        Hypencoder's query "vector") and ``PrfDenseSearchResult`` hits carrying each document's vector.
        ``remove_dups`` is accepted for Pyserini's signature: an index's docids are distinct, so hits never repeat.
        """
        _check_k(k)
        with torch_threads(threads):
            qnets = self._encode([query])
            if len(qnets) != 1:
                raise ValueError(f"search() takes one query, got {len(qnets)} q-nets; use batch_search")
            hits = self._search_qnets(qnets, k, return_vector)[0]
        return (qnets, hits) if return_vector else hits

    def batch_search(self, queries: Sequence[Union[str, QNetBatch]], q_ids: Sequence[str], k: int = 10,
                     threads: int = 1, return_vector: bool = False):
        """``{qid: hits}`` for many queries, encoded and scored together in chunks.

        ``return_vector=True`` returns ``(qnets, {qid: hits})`` as Pyserini does: all queries' q-nets in one
        ``QNetBatch`` (in the order of ``queries``) and ``PrfDenseSearchResult`` hits with document vectors.
        """
        _check_k(k)
        queries, q_ids = list(queries), [str(q) for q in q_ids]
        if len(queries) != len(q_ids):
            raise ValueError(f"{len(queries)} queries but {len(q_ids)} query ids")
        if len(set(q_ids)) != len(q_ids):
            raise ValueError("duplicate query ids in batch_search")
        results: Dict[str, list] = {}
        encoded: List[QNetBatch] = []
        with torch_threads(threads):
            for start in range(0, len(queries), QUERY_CHUNK):
                qnets = self._encode(queries[start:start + QUERY_CHUNK])
                if return_vector:
                    encoded.append(qnets)
                for qid, hits in zip(q_ids[start:start + QUERY_CHUNK], self._search_qnets(qnets, k, return_vector)):
                    results[qid] = hits
        if return_vector:
            return (QNetBatch.concat(encoded) if encoded else None), results
        return results


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")


def _as_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x)
