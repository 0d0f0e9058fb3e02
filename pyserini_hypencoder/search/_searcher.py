"""HypencoderSearcher: Pyserini's ``FaissSearcher`` interface over q-net scoring of an index directory."""
from __future__ import annotations

import logging
import warnings
from functools import partial
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from .._compat import DenseSearchResult, PrfDenseSearchResult
from .._threads import torch_threads
from ..formats.corpus import Document, JsonlCorpus, LuceneTexts
from ..index import DenseIndex, ShardedIndex
from ..index import open_index as _open
from ..model.qnet import QNetBatch
from ..strategies import get_strategy
from .exact import complete_ties, ranked_hits
from .sharded import search_each_shard

logger = logging.getLogger(__name__)

# Queries encoded and scored together inside batch_search (bounds memory for long query lists).
QUERY_CHUNK = 64


def call_threads(threads: Optional[int]) -> Optional[int]:
    """The torch thread count for a call with Pyserini's ``threads`` argument: more than 1 sets it for the call;
    1 (Pyserini's default) or None keeps the process setting (``--threads``), so the default never slows a search."""
    return threads if threads and threads > 1 else None


def open_index(index) -> DenseIndex:
    """An index directory, a comma-separated list of shard directories (or a list), or a directory of shards
    (:func:`pyserini_hypencoder.index.open_index`), opened; a DenseIndex as it is."""
    return _open(index)


def check_compatible(index: DenseIndex, query_encoder, *, force: bool = False) -> None:
    """Dimension (always) and encoder fingerprint (unless ``force``) of ``index`` against ``query_encoder``."""
    name, fingerprint = getattr(query_encoder, "encoder_name", None), getattr(query_encoder, "fingerprint", None)
    name, fingerprint = (None if name is None else str(name)), (str(fingerprint) if fingerprint else None)
    spec = getattr(getattr(query_encoder, "model", None), "spec", None)
    dimension = None if spec is None else int(spec.input_dim)
    # the document side is hashed only if the full fingerprints differ (it re-reads the backbone's weights)
    index.check_encoder(name, fingerprint, force=force, dimension=dimension,
                        document_fingerprint=lambda: getattr(query_encoder, "document_fingerprint", None))
    if fingerprint is None and index.meta.get("encoder_fingerprint") and not force:
        raise ValueError(f"{index.path}: the query encoder has no fingerprint to compare with the index's "
                         f"({index.meta['encoder_fingerprint']}); pass --force (force=True) to search anyway")


class HypencoderSearcher:
    """Search an index directory with q-nets, the way Pyserini's ``FaissSearcher`` searches a faiss index.

    ``index_dir``: a directory written by ``python -m pyserini_hypencoder.encode`` (or a DenseIndex), or shards
    searched as one without merging: a comma-separated list or a list of shard directories, or a directory whose
    subdirectories are the shards (the same run as the merged index for exact and surrogate search; graph and ivf
    search each shard's own structure and merge the top k);
    ``query_encoder``: a HypencoderQueryEncoder, or a checkpoint path / ``"default"`` loaded on the CPU; ``force``:
    search an index of other encoder weights (a dimension mismatch is always an error).  ``strategy`` names an
    entry of :data:`~pyserini_hypencoder.strategies.STRATEGIES` (``exact`` by default); ``search_params`` are its
    parameters (e.g. ``{"candidates": 2000}`` for surrogate), the declared defaults filling in the rest.
    ``search=`` and ``block_size=`` are deprecated spellings of ``strategy=`` and ``search_params={"block_size"}``.
    :meth:`doc` reads documents from ``corpus`` (a JSONL file or folder), ``lucene_index`` (a Pyserini Lucene
    index with ``--storeRaw``), or else the corpus the index records it was encoded from.
    """

    def __init__(self, index_dir, query_encoder, *, force: bool = False, strategy: str = "exact",
                 search_params: Optional[dict] = None, search: Optional[str] = None,
                 block_size: Optional[int] = None, corpus=None, lucene_index=None):
        params = dict(search_params or {})
        if search is not None:
            warnings.warn("HypencoderSearcher(search=...) is deprecated; use strategy=...", DeprecationWarning, 2)
            strategy = search
        if block_size is not None:
            warnings.warn("HypencoderSearcher(block_size=...) is deprecated; use search_params={'block_size': ...}",
                          DeprecationWarning, 2)
            params["block_size"] = block_size
        self.strategy = get_strategy(strategy)
        self.search_params = self.strategy.resolve(params)
        self.index = open_index(index_dir)
        if isinstance(query_encoder, str):
            from ..encoders import HypencoderQueryEncoder
            query_encoder = HypencoderQueryEncoder(query_encoder)
        self.query_encoder = query_encoder
        check_compatible(self.index, query_encoder, force=force)
        if self.strategy.structure:
            self.index.structure_file(self.strategy.structure)   # a one-line error naming the command that adds it
        self._search = self.strategy.load()
        if self.strategy.structure and isinstance(self.index, ShardedIndex):   # each shard walks its own structure
            self._search = partial(search_each_shard, self._search)
        self.queries_searched = self.documents_scored = 0   # what the q-nets cost: documents scored per query
        self._documents = (JsonlCorpus(corpus) if corpus is not None else
                           LuceneTexts(lucene_index) if lucene_index is not None else None)

    @property
    def scored_share(self) -> float:
        """The mean share of the index the q-nets scored per query so far (1.0 for exact search)."""
        return self.documents_scored / max(1, self.queries_searched * self.index.num_docs)

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
        return f"HypencoderSearcher({self.index!r}, strategy={self.strategy.name!r})"

    # -- searching ---------------------------------------------------------------------------------------------
    def _encode(self, queries: Sequence[Union[str, QNetBatch]]) -> QNetBatch:
        if all(isinstance(q, QNetBatch) for q in queries):
            return QNetBatch.concat(list(queries))
        if any(isinstance(q, QNetBatch) for q in queries):
            raise ValueError("mix of query texts and pre-encoded q-nets in one batch")
        return self.query_encoder.encode_batch(list(queries))

    def _search_qnets(self, qnets: QNetBatch, k: int, with_vectors: bool = False) -> List[list]:
        """Each query's k best hits in run order; an exhaustive strategy completes the ties at the cut first."""
        if self.index.num_docs == 0:
            return [[] for _ in range(len(qnets))]
        search = lambda depth: self._search(qnets, self.index, depth, **self.search_params)   # noqa: E731
        found = complete_ties(search, k, self.index.num_docs) if self.strategy.exhaustive else search(k)
        self.queries_searched += len(qnets)
        self.documents_scored += int(found.scored.sum())
        hits = ranked_hits(found, self.index.docids, k)
        if not with_vectors:
            return [[DenseSearchResult(docid, score) for docid, score in query_hits] for query_hits in hits]
        return [[PrfDenseSearchResult(docid, score, vector) for (docid, score), vector in
                 zip(query_hits, self.index.vectors.rows(self.index.rows_for(d for d, _ in query_hits)).numpy())]
                for query_hits in hits]

    # -- Pyserini's API ----------------------------------------------------------------------------------------
    def doc(self, docid: str) -> Optional[Document]:
        """The document ``docid`` (``docid()``, ``raw()``, ``contents()``, as ``LuceneSearcher.doc`` gives), None
        when the text source lacks it; a ValueError when the searcher has no text source."""
        if self._documents is None:
            recorded = self.index.meta.get("corpus")
            if not recorded:
                raise ValueError(f"{self.index.path}: the index records no corpus; give the searcher corpus= or "
                                 f"lucene_index= to read documents")
            self._documents = JsonlCorpus.from_settings(recorded)
        return self._documents.document(str(docid))

    def search(self, query: Union[str, QNetBatch], k: int = 10, threads: int = 1, remove_dups: bool = False,
               return_vector: bool = False):
        """The ``k`` best documents for one query (text or a pre-encoded q-net), best first.

        ``threads`` > 1 sets torch's CPU threads for this call; 1 keeps the process setting.  As in Pyserini,
        ``return_vector=True`` returns ``(query, hits)``: the query's q-net (a one-query ``QNetBatch``, the
        Hypencoder's query "vector") and ``PrfDenseSearchResult`` hits carrying each document's vector.
        ``remove_dups`` is accepted for Pyserini's signature: an index's docids are distinct, so hits never repeat.
        """
        _check_k(k)
        with torch_threads(call_threads(threads)):
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
        with torch_threads(call_threads(threads)):
            for start in range(0, len(queries), QUERY_CHUNK):
                qnets = self._encode(queries[start:start + QUERY_CHUNK])
                if return_vector:
                    encoded.append(qnets)
                results.update(zip(q_ids[start:start + QUERY_CHUNK], self._search_qnets(qnets, k, return_vector)))
        if return_vector:
            return (QNetBatch.concat(encoded) if encoded else None), results
        return results


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive integer, got {k!r}")
