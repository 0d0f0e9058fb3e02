"""What both servers serve: named indexes, each a :class:`HypencoderSearcher`, searched through one
:class:`~.batcher.Batcher`, and their documents read through the searcher's text source (an offset table of the
corpus, or a Lucene index), never the corpus in memory.

Errors a client caused are :class:`BadRequest` (400), :class:`NotFound` (404) and ``batcher.Overloaded`` (503);
the REST and MCP layers turn them into their own answers.
"""
from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Hashable, List, Mapping, Optional, Sequence, Tuple

from ..strategies import Strategy
from .batcher import Batcher, Overloaded

logger = logging.getLogger(__name__)

DEFAULT_MAX_HITS = 1000
VARIANTS = 16          # per index: searchers kept for distinct per-request strategy parameters
ID_FIELDS = ("id", "_id", "docid")


class BadRequest(ValueError):
    """The request is wrong (a 400)."""


class NotFound(LookupError):
    """No such index or document (a 404)."""


class RequestTimeout(RuntimeError):
    """No answer within the service's timeout (a 504)."""


class ServedIndex:
    """One served index: its searcher (the server's strategy and parameters) and, for per-request parameters,
    shallow copies of it that differ only in ``search_params`` (the index, encoder and text source are shared)."""

    def __init__(self, name: str, searcher, *, text_source: Optional[str] = None):
        self.name, self.searcher, self.text_source = name, searcher, text_source
        self.strategy: Strategy = searcher.strategy
        self._variants: "OrderedDict[Tuple, Any]" = OrderedDict({self.params_key(searcher.search_params): searcher})
        self._lock = threading.Lock()

    @staticmethod
    def params_key(params: Mapping[str, Any]) -> Tuple:
        return tuple(sorted(params.items()))

    def resolve(self, params: Mapping[str, Any]) -> Tuple:
        """The key of the searcher for the server's parameters updated with ``params`` (checked by the strategy
        registry: an unknown name or a bad value is a BadRequest)."""
        try:
            resolved = self.strategy.resolve({**self.searcher.search_params, **params})
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        key = self.params_key(resolved)
        with self._lock:
            if key in self._variants:
                self._variants.move_to_end(key)
            else:
                variant = copy.copy(self.searcher)
                variant.search_params = dict(resolved)
                self._variants[key] = variant
                while len(self._variants) > VARIANTS:
                    self._variants.popitem(last=False)
        return key

    def searcher_for(self, key: Tuple):
        with self._lock:
            found = self._variants.get(key)
        if found is None:   # evicted since the request resolved it: make it again
            variant = copy.copy(self.searcher)
            variant.search_params = dict(key)
            return variant
        return found

    def document(self, docid: str):
        """The Document, or None; NotFound when the index has no text source."""
        if self.text_source is None:
            raise NotFound(f"index {self.name!r} has no document text: start the server with --corpus "
                           f"{self.name}=FILE or --lucene-index {self.name}=DIR")
        return self.searcher.doc(docid)

    def status(self) -> dict:
        path = Path(self.searcher.index.path)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        return {"downloaded": True, "size_bytes": str(size), "path": str(path), "num_docs": self.searcher.num_docs,
                "dimension": self.searcher.dimension, "strategy": self.strategy.name,
                "search_params": dict(self.searcher.search_params),
                "encoder": self.searcher.index.meta.get("encoder"), "text_source": self.text_source}


class Service:
    """The served indexes and the batcher that runs their queries.  ``max_hits``: the largest ``hits`` a request
    may ask for; ``timeout``: seconds a request waits for its answer (queue and search)."""

    def __init__(self, indexes: Mapping[str, ServedIndex], *, encoder_name: str, max_batch: int = 32,
                 max_wait: float = 0.002, max_queue: int = 256, max_hits: int = DEFAULT_MAX_HITS,
                 timeout: float = 30.0, wait_when_idle: bool = False):
        if not indexes:
            raise ValueError("no index to serve")
        self.indexes = dict(indexes)
        self.encoder_name = encoder_name
        self.max_hits, self.timeout = int(max_hits), float(timeout)
        self.batcher = Batcher(self._run, max_batch=max_batch, max_wait=max_wait, max_queue=max_queue,
                               wait_when_idle=wait_when_idle)
        # document lookups: one thread (a Lucene text source is a JVM object), off the event loop and the model
        self.documents = ThreadPoolExecutor(1, thread_name_prefix="documents")
        self.stopping = False

    # -- lookups ---------------------------------------------------------------------------------------------
    def index(self, name: str) -> ServedIndex:
        try:
            return self.indexes[name]
        except KeyError:
            raise NotFound(f"index {name!r} not found; this server has: {', '.join(self.indexes)}") from None

    def list_indexes(self, index_type: Optional[str] = None) -> List[str]:
        """The served names for ``index_type`` None, ``hypencoder`` or ``faiss`` (a Hypencoder index is also a
        faiss index directory); none for Pyserini's other types (``tf``, ``lucene_flat``, ...)."""
        if index_type in (None, "", "hypencoder", "faiss"):
            return list(self.indexes)
        if index_type in ("tf", "lucene_flat", "lucene_hnsw", "impact"):
            return []
        raise BadRequest(f"index_type must be one of hypencoder, faiss, tf, lucene_flat, lucene_hnsw, impact; "
                         f"got {index_type!r}")

    # -- searching -------------------------------------------------------------------------------------------
    def check_hits(self, hits: Any) -> int:
        if isinstance(hits, bool) or not isinstance(hits, int):
            raise BadRequest(f"hits must be an integer, got {hits!r}")
        if hits <= 0 or hits > self.max_hits:
            raise BadRequest(f"hits must be between 1 and {self.max_hits}, got {hits}")
        return hits

    @staticmethod
    def check_query(query: Any) -> str:
        if not isinstance(query, str):
            raise BadRequest(f"query must be a string, got {type(query).__name__}")
        if not query.strip():
            raise BadRequest("query is empty")
        return query

    def submit(self, index: str, query: str, hits: int, params: Optional[Mapping[str, Any]] = None) -> Future:
        """A future of ``[(docid, score), ...]`` for one query (checked here; Overloaded when the queue is full).
        Queries share a batch when they search the same index with the same strategy parameters (and, for a
        strategy that does not score every document, the same ``hits``)."""
        served = self.index(index)
        query, hits = self.check_query(query), self.check_hits(hits)
        key = served.resolve(dict(params or {}))
        return self.batcher.submit((index, key, None if served.strategy.exhaustive else hits), (query, hits))

    def _run(self, key: Hashable, items: Sequence[Tuple[str, int]]) -> List[Any]:
        """One batch: ``batch_search`` of every query at the largest ``hits`` of the batch, each cut to its own.
        For an exhaustive strategy the first ``hits`` of a deeper search are the same hits (ties at the cut are
        completed before the run order picks among them), so batch mates never change a query's answer.  Should
        the batch fail, each query is searched alone, so one bad query fails only its own request."""
        index, params_key, _ = key
        searcher = self.indexes[index].searcher_for(params_key)
        try:
            return self._search(searcher, items)
        except Exception as exc:
            if len(items) == 1:
                return [exc]
            logger.warning("a batch of %d failed (%s); searching its queries one by one", len(items), exc)
        results: List[Any] = []
        for item in items:
            try:
                results.extend(self._search(searcher, [item]))
            except Exception as exc:
                results.append(exc)
        return results

    @staticmethod
    def _search(searcher, items: Sequence[Tuple[str, int]]) -> List[List[Tuple[str, float]]]:
        depth = max(k for _, k in items)
        qids = [str(i) for i in range(len(items))]
        found = searcher.batch_search([q for q, _ in items], qids, k=depth)
        return [[(hit.docid, float(hit.score)) for hit in found[qid][:k]] for qid, (_, k) in zip(qids, items)]

    # -- for an event loop -----------------------------------------------------------------------------------
    async def hits(self, index: str, query: str, hits: int, params: Optional[Mapping[str, Any]] = None):
        """``[(docid, score), ...]`` of one query, awaited (the batch runs on the batcher's thread)."""
        if self.stopping:
            raise Overloaded("the server is shutting down")
        future = self.submit(index, query, hits, params)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except asyncio.TimeoutError:
            raise RequestTimeout(f"no answer within {self.timeout:g} s (the server is busy)") from None

    async def off_loop(self, function, *args):
        """``function(*args)`` on the document thread (file and JVM reads stay off the event loop)."""
        return await asyncio.get_running_loop().run_in_executor(self.documents, function, *args)

    # -- documents -------------------------------------------------------------------------------------------
    def texts(self, index: str, docids: Sequence[str]) -> List[str]:
        """The text of each docid ("" for those the text source lacks, and for all when the index has none)."""
        served = self.index(index)
        if served.text_source is None:
            return ["" for _ in docids]
        texts = []
        for docid in docids:
            doc = served.document(docid)
            texts.append("" if doc is None else doc.contents())
        return texts

    def record(self, index: str, docid: str) -> Tuple[str, Optional[dict], str]:
        """``(raw, parsed record or None, contents)`` of a document; NotFound when it is not there."""
        doc = self.index(index).document(docid)
        if doc is None:
            raise NotFound(f"document {docid!r} not found in index {index!r}")
        try:
            parsed = json.loads(doc.raw())
        except json.JSONDecodeError:
            parsed = None
        return doc.raw(), (parsed if isinstance(parsed, dict) else None), doc.contents()

    def document_fields(self, index: str, docid: str) -> Dict[str, str]:
        """Pyserini 1.6's document answer: the stored record's fields as strings (nested values as JSON), with
        ``contents`` (the text the encoder read: title and text) when the record has none."""
        raw, parsed, contents = self.record(index, docid)
        fields = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (parsed or {}).items()}
        fields.setdefault("contents", contents)
        return fields

    def document_payload(self, index: str, docid: str, parse: bool = True,
                         max_doc_length: Optional[int] = None) -> Any:
        """Pyserini 2.x's ``doc``: the raw record (``parse=False``), or its fields without the id (one field: its
        value alone), text fields cut to ``max_doc_length`` characters."""
        raw, parsed, contents = self.record(index, docid)
        return format_document(raw, parsed, contents, parse, max_doc_length)

    def payloads(self, index: str, docids: Sequence[str], parse: bool, max_doc_length: Optional[int]) -> List[Any]:
        served = self.index(index)
        out = []
        for docid in docids:
            doc = served.document(docid) if served.text_source else None
            if doc is None:
                out.append(None)
                continue
            try:
                parsed = json.loads(doc.raw())
            except json.JSONDecodeError:
                parsed = None
            out.append(format_document(doc.raw(), parsed if isinstance(parsed, dict) else None, doc.contents(),
                                       parse, max_doc_length))
        return out

    def close(self) -> None:
        self.documents.shutdown(wait=True)


def format_document(raw: str, parsed: Optional[dict], contents: str, parse: bool,
                    max_doc_length: Optional[int]) -> Any:
    if not parse:
        return raw
    if parsed is None:
        value: Any = contents
    else:
        value = {k: (v if isinstance(v, (dict, list)) else str(v)) for k, v in parsed.items() if k not in ID_FIELDS}
        if len(value) == 1:
            value = next(iter(value.values()))
    if max_doc_length is None:
        return value
    if isinstance(value, str):
        return value[:max_doc_length]
    if isinstance(value, dict):
        return {k: v[:max_doc_length] if isinstance(v, str) and k.lower() in ("body", "content", "contents", "text")
                else v for k, v in value.items()}
    return value
