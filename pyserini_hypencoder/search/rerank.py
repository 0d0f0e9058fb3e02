"""Rerank a first-stage run with q-nets: each query's top ``depth`` candidates are rescored and reordered.

Candidates beyond the depth are dropped (the output holds at most ``depth`` hits per query).  Candidate vectors
come from a dense index; candidates the index lacks (or every candidate, without an index) are encoded from
their text, taken from a JSONL corpus or a Pyserini Lucene index's stored raw documents.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from .._threads import torch_threads
from ..encoders import ChunkEncoder, HypencoderDocumentEncoder
from ..formats.runs import RunEntry, rank_hits
from ..index import DenseIndex
from ._searcher import call_threads, check_compatible, open_index

logger = logging.getLogger(__name__)

Hits = List[Tuple[str, float]]
DOC_BATCH = 32
TAIL_STEP = 1e-3   # keep_rest: score gap between the kept first-stage entries below the reranked ones
PROGRESS_SLICE = 512


class HypencoderReranker:
    """Rescore per-query candidate sets with :meth:`QNetBatch.score_candidates`.

    The query encoder's model also encodes candidates that ``index`` (checked against the encoder, as the searcher
    does; ``force`` accepts other weights) lacks, from ``texts`` (a ``JsonlCorpus`` or ``LuceneTexts``), truncated to
    ``doc_max_length`` (default: the index's ``max_length`` and ``bf16``, else the model's passage setting).
    ``batch_size`` queries share a q-net batch; ``progress`` shows tqdm bars on stderr.
    """

    def __init__(self, query_encoder, *, index=None, texts=None, force: bool = False, batch_size: int = 32,
                 doc_max_length: Optional[int] = None, progress: bool = True):
        self.query_encoder = query_encoder
        self.index: Optional[DenseIndex] = open_index(index) if index is not None else None
        if self.index is not None:
            check_compatible(self.index, query_encoder, force=force)
        self.texts = texts
        self.batch_size = int(batch_size)
        self.doc_max_length = doc_max_length
        self.progress = progress
        self._doc_encoder = None

    # -- candidate vectors -------------------------------------------------------------------------------------
    def _document_encoder(self):
        if self._doc_encoder is None:
            enc = self.query_encoder
            meta = self.index.meta if self.index is not None else {}   # encode as the index's vectors were
            max_length = self.doc_max_length or meta.get("max_length")
            bf16 = bool(meta["bf16"]) if "bf16" in meta else enc.bf16
            self._doc_encoder = HypencoderDocumentEncoder(enc.model, device=str(enc.device), bf16=bf16,
                                                          max_length=max_length)
        return self._doc_encoder

    def candidate_vectors(self, docids: Sequence[str]) -> Dict[str, np.ndarray]:
        """float32 vectors for ``docids``: from the index where present, otherwise encoded from text."""
        docids = list(dict.fromkeys(docids))
        vectors: Dict[str, np.ndarray] = {}
        missing = docids
        if self.index is not None and docids:
            rows = self.index.rows_for(docids)
            present = [i for i, r in enumerate(rows) if r >= 0]
            if present:
                vectors.update(zip([docids[i] for i in present], self.index.vectors.rows(rows[present]).numpy()))
            missing = [d for d, r in zip(docids, rows) if r < 0]
        if missing:
            vectors.update(self._encode_texts(missing))
        return vectors

    def _encode_texts(self, docids: List[str]) -> Dict[str, np.ndarray]:
        where = "in the index" if self.index is not None else "encoded (no index given)"
        if self.texts is None:
            raise ValueError(f"{len(docids)} candidate documents are not {where} and there is no text source "
                             f"(--corpus or --lucene-index), e.g. {', '.join(docids[:3])}")
        texts = self.texts.texts(docids)
        unknown = [d for d in docids if d not in texts]
        if unknown:
            raise ValueError(f"{len(unknown)} candidate documents are unknown to the index and to the text source "
                             f"{getattr(self.texts, 'path', '')}, e.g. {', '.join(unknown[:3])}")
        logger.info("encoding %d candidate documents from their text", len(docids))
        # The encode CLI's chunk encoder (tokenized once, sorted by token count, padded per batch), so these
        # vectors are made the way an index's are; slices of similar length keep the progress bar moving.
        chunks = ChunkEncoder(self._document_encoder(), batch_size=DOC_BATCH)
        order = sorted(docids, key=lambda d: len(texts[d]))
        out: Dict[str, np.ndarray] = {}
        with tqdm(total=len(order), desc="encode candidates", unit="doc", disable=not self.progress) as bar:
            for start in range(0, len(order), PROGRESS_SLICE):
                part = order[start:start + PROGRESS_SLICE]
                out.update(zip(part, chunks.encode([texts[d] for d in part])))
                bar.update(len(part))
        return out

    # -- reranking ---------------------------------------------------------------------------------------------
    def rerank(self, queries: Mapping[str, str], run: Mapping[str, Sequence[RunEntry]], *, depth: int = 100,
               threads: Optional[int] = None, keep_rest: bool = False) -> Dict[str, Hits]:
        """``{qid: [(docid, score), ...]}`` best first for each query that has candidates.

        ``run`` is ``{qid: entries in rank order}`` (see :func:`pyserini_hypencoder.formats.read_run`); only its
        first ``depth`` entries per query are reranked.  The rest are dropped, or with ``keep_rest`` appended in
        their first-stage order, scored ``TAIL_STEP`` apart below the lowest reranked score (so the run's order
        is by score, and its MAP and deep recall are not below the first stage's by construction).  Queries of the
        run without a topic are ignored (with a warning); topics without candidates are skipped.
        """
        if depth <= 0:
            raise ValueError(f"rerank depth must be positive, got {depth}")
        qids = [qid for qid in queries if run.get(qid)]
        if not qids:
            raise ValueError("no query of the topics has candidates in the run (do the query ids match?)")
        unknown = [qid for qid in run if qid not in queries]
        if unknown:
            logger.warning("%d queries of the run have no topic and are ignored, e.g. %s", len(unknown),
                           ", ".join(unknown[:3]))
        skipped = len(queries) - len(qids)
        if skipped:
            logger.info("%d topics have no candidates in the run and are skipped", skipped)
        candidates = {qid: [e.docid for e in run[qid][:depth]] for qid in qids}
        results: Dict[str, Hits] = {}
        with torch_threads(call_threads(threads)):
            vectors = self.candidate_vectors([d for qid in qids for d in candidates[qid]])
            bar = tqdm(total=len(qids), desc="rerank", unit="query", disable=not self.progress)
            for start in range(0, len(qids), self.batch_size):
                chunk = qids[start:start + self.batch_size]
                qnets = self.query_encoder.encode_batch([queries[q] for q in chunk])
                scores = score_candidates(qnets, [candidates[q] for q in chunk], vectors)
                for qid, row in zip(chunk, scores):
                    results[qid] = rank_hits(zip(candidates[qid], row))
                    if keep_rest:
                        lowest = results[qid][-1][1]
                        results[qid] += [(e.docid, lowest - TAIL_STEP * i) for i, e in enumerate(run[qid][depth:], 1)]
                bar.update(len(chunk))
            bar.close()
        return results


def score_candidates(qnets, candidate_lists: List[Sequence[str]], vectors: Mapping[str, np.ndarray]) -> List[List[float]]:
    """Each query's scores of its own candidates (``vectors``: float32 by docid), as the reranker scores them:
    one (Q, longest list, d) batch, padding discarded."""
    width = max(len(c) for c in candidate_lists)
    dim = next(iter(vectors.values())).shape[0]
    stacked = np.zeros((len(candidate_lists), width, dim), dtype=np.float32)
    for i, cands in enumerate(candidate_lists):
        if len(cands):
            stacked[i, :len(cands)] = np.stack([vectors[d] for d in cands])
    scores = qnets.score_candidates(torch.from_numpy(stacked)).float().cpu().numpy()
    return [scores[i, :len(c)].tolist() for i, c in enumerate(candidate_lists)]
