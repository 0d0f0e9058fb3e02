"""Training data: the original JSONL format, or BEIR corpus/queries/qrels plus a first-stage run.

Everything becomes a :class:`TrainingData`: tables of query and passage texts and one :class:`Example` per
query (positive and hard-negative passage rows, optional teacher scores); frozen features are cached per table.
"""
from __future__ import annotations

import json
import logging
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .._fsutil import atomic_path
from ..formats.corpus import JsonlCorpus, write_json_collection
from ..formats.qrels import read_qrels
from ..formats.runs import read_run
from ..formats.topics import read_topics, write_topics

logger = logging.getLogger(__name__)


@dataclass
class Example:
    query: int                      # row in TrainingData.query_texts
    positives: List[int]            # passage rows
    negatives: List[int]            # passage rows, best first-stage rank first
    scores: Optional[Dict[int, float]] = None   # teacher score per passage row (margin-MSE)


@dataclass
class TrainingData:
    query_ids: List[str]
    query_texts: List[str]
    passage_ids: List[str]
    passage_texts: List[str]
    examples: List[Example]
    qrels: Dict[str, Dict[str, int]] = field(default_factory=dict)   # for retrieval evaluation (BEIR route)

    @property
    def has_teacher_scores(self) -> bool:
        return bool(self.examples) and all(e.scores is not None for e in self.examples)

    def split(self, dev_fraction: float, seed: int) -> Tuple["TrainingData", "TrainingData"]:
        """(train, dev) by query id (every example of a query on the same side), carved from these (training)
        queries with a private RNG."""
        groups: Dict[str, int] = {}
        for e in self.examples:
            groups.setdefault(self.query_ids[e.query], len(groups))
        order = list(range(len(groups)))
        random.Random(seed).shuffle(order)
        n_dev = int(round(len(order) * dev_fraction)) if dev_fraction > 0 else 0
        if dev_fraction > 0 and len(order) > 1:
            n_dev = min(max(n_dev, 1), len(order) - 1)
        dev_set = set(order[:n_dev])
        in_dev = lambda e: groups[self.query_ids[e.query]] in dev_set
        pick = lambda keep: TrainingData(self.query_ids, self.query_texts, self.passage_ids, self.passage_texts,
                                         [e for e in self.examples if in_dev(e) == keep], self.qrels)
        return pick(False), pick(True)


# -- original JSONL format -------------------------------------------------
def load_jsonl(path, *, positive_filter: str = "first", positive_type: str = "positive",
               score_threshold: Optional[float] = None, max_items: Optional[int] = None) -> TrainingData:
    """``{"query": {"id", "content"}, "items": [{"id", "content", "score", "type"}, ...]}`` per line
    (FlagEmbedding's ``{"query", "pos", "neg", "pos_scores", "neg_scores"}`` lines are accepted too).

    ``positive_filter``: ``first`` (items[0], as in the paper), ``type`` (item type == positive_type)
    or ``threshold`` (score > score_threshold).
    """
    is_positive = {"first": lambda k, item: k == 0, "type": lambda k, item: item.get("type") == positive_type,
                   "threshold": lambda k, item: item.get("score") is not None and
                   float(item["score"]) > float(score_threshold)}.get(positive_filter)
    if is_positive is None:
        raise ValueError(f"unknown positive_filter {positive_filter!r} (first|type|threshold)")
    path = Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise FileNotFoundError(f"{path}: no JSONL training file")
    q_ids, q_texts, p_ids, p_texts, p_row = [], [], [], [], {}
    examples = []

    def passage_row(pid, text) -> int:
        key = (pid, text)
        if key not in p_row:
            p_row[key] = len(p_ids)
            p_ids.append(str(pid))
            p_texts.append(text)
        return p_row[key]

    for file in files:
        with open(file, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    if "items" not in rec and "pos" in rec:
                        rec = _from_pos_neg(rec, f"{file.name}:{n}")
                    query, items = rec["query"], rec["items"]
                    qtext = query["content"]
                    qid = str(query.get("id", f"{file.name}:{n}"))
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{file}:{n}: not a training record "
                                     f"{{'query': {{'id', 'content'}}, 'items': [...]}} ({exc})") from None
                items = list(items)[:max_items] if max_items else list(items)
                if not items:
                    continue
                scores, pos, neg = {}, [], []
                for k, item in enumerate(items):
                    if "content" not in item:
                        raise ValueError(f"{file}:{n}: item {k} has no 'content'")
                    r = passage_row(item.get("id", item["content"]), item["content"])
                    if item.get("score") is not None:
                        scores[r] = float(item["score"])
                    (pos if is_positive(k, item) else neg).append(r)
                if not pos:
                    continue
                q_ids.append(qid)
                q_texts.append(qtext)
                examples.append(Example(len(q_ids) - 1, pos, [r for r in neg if r not in pos],
                                        scores if len(scores) == len(items) else None))
    if not examples:
        raise ValueError(f"{path}: no training examples with a positive")
    logger.info("%s: %d queries, %d passages", path, len(examples), len(p_ids))
    return TrainingData(q_ids, q_texts, p_ids, p_texts, examples)


def _from_pos_neg(rec: dict, where: str) -> dict:
    """FlagEmbedding-style ``{"query": str, "pos": [...], "neg": [...], "pos_scores", "neg_scores"}`` ->
    the standard format (positives first, teacher scores when given)."""
    pos, neg = list(rec["pos"]), list(rec.get("neg", []))
    scores = list(rec.get("pos_scores") or []) + list(rec.get("neg_scores") or [])
    texts = pos + neg
    if len(scores) != len(texts):
        scores = [None] * len(texts)
    items = [{"id": t, "content": t, "score": sc, "type": "positive" if k < len(pos) else "negative"}
             for k, (t, sc) in enumerate(zip(texts, scores))]
    query = rec["query"] if isinstance(rec["query"], dict) else {"id": where, "content": rec["query"]}
    return {"query": query, "items": items}


# -- BEIR route -----------------------------------------------------------
def ranked_docids(run) -> Dict[str, List[str]]:
    """A first-stage run (a path in any format :func:`~pyserini_hypencoder.formats.read_run` reads, or
    ``{qid: [docid, ...]}``) as docids per query in rank order."""
    if isinstance(run, dict):
        return run
    return {qid: [e.docid for e in entries] for qid, entries in read_run(run).items()}


def check_beir(data_dir, split: str) -> Path:
    """The folder, if it holds ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``."""
    d = Path(data_dir)
    for name in ("corpus.jsonl", "queries.jsonl", f"qrels/{split}.tsv"):
        if not (d / name).is_file():
            raise FileNotFoundError(f"{d / name}: missing (expected a BEIR-style folder)")
    return d


def interleave(lists: Sequence[Sequence[int]], depth: int) -> List[int]:
    """The first ``depth`` distinct items of ranked lists taken rank by rank across them (rank 1 of each list,
    then rank 2, ...): with two lists, about the top ``depth / 2`` of each."""
    merged, seen = [], set()
    for k in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if k < len(x) and x[k] not in seen:
                seen.add(x[k])
                merged.append(x[k])
    return merged[:depth]


def load_beir(data_dir, *, split: str = "train", runs: Sequence = (), negatives_depth: int = 100,
              min_relevance: int = 1) -> TrainingData:
    """BEIR folder + first-stage runs: positives from ``qrels/<split>.tsv`` (rel >= min_relevance),
    hard negatives from each run's top ``negatives_depth`` (positives and judged docs excluded),
    interleaved across runs in rank order and cut at ``negatives_depth``."""
    d = check_beir(data_dir, split)
    p_ids, p_texts = JsonlCorpus(d / "corpus.jsonl").read()
    row = {pid: i for i, pid in enumerate(p_ids)}
    queries = read_topics(d / "queries.jsonl")
    qrels = read_qrels(d / f"qrels/{split}.tsv")
    ranked = [ranked_docids(r) for r in runs]
    q_ids, q_texts, examples = [], [], []
    for qid, judged in qrels.items():
        if qid not in queries:
            raise ValueError(f"qrels query {qid} is not in {d / 'queries.jsonl'}")
        pos = [row[p] for p, rel in judged.items() if rel >= min_relevance and p in row]
        if not pos:
            continue
        lists = [[row[p] for p in run.get(qid, [])[:negatives_depth] if p not in judged and p in row]
                 for run in ranked]
        negs = interleave(lists, negatives_depth)
        q_ids.append(qid)
        q_texts.append(queries[qid])
        examples.append(Example(len(q_ids) - 1, pos, negs))
    if not examples:
        raise ValueError(f"{d}: no {split} queries with a relevant document")
    logger.info("%s/%s: %d queries, %d judged positives, %d passages", d, split, len(examples),
                sum(len(e.positives) for e in examples), len(p_ids))
    return TrainingData(q_ids, q_texts, p_ids, p_texts, examples, qrels)


def dense_run(query_vectors, passage_vectors, query_ids: Sequence[str], passage_ids: Sequence[str],
              depth: int = 100) -> Dict[str, List[str]]:
    """Backbone negatives: cosine top-``depth`` with (cached) backbone vectors."""
    import torch
    q = torch.nn.functional.normalize(query_vectors.float(), dim=-1)
    p = torch.nn.functional.normalize(passage_vectors.float(), dim=-1)
    top = (q @ p.T).topk(min(depth, p.shape[0]), dim=1).indices
    return {qid: [passage_ids[j] for j in top[i].tolist()] for i, qid in enumerate(query_ids)}


def bm25_run(data_dir, *, split: str, work_dir, depth: int = 100, threads: int = 1) -> Path:
    """Pyserini BM25 run of ``topics.<split>.tsv`` over a Lucene index of the corpus (``title text`` in one
    field, as BEIR "flat"), built under ``work_dir`` if absent.  Returns the TREC run path."""
    d, work = Path(data_dir), Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    index = work / "bm25-index"
    if not index.is_dir():
        docs = work / "bm25-docs"
        write_json_collection(JsonlCorpus(d / "corpus.jsonl"), docs / "docs.jsonl")
        with atomic_path(index) as building:
            _pyserini(["pyserini.index.lucene", "--collection", "JsonCollection", "--input", str(docs), "--index",
                       str(building), "--generator", "DefaultLuceneDocumentGenerator", "--threads", str(threads),
                       "--storeRaw"])
    run = work / f"bm25-{split}-top{depth}.trec"
    if run.exists():
        return run
    queries = read_topics(d / "queries.jsonl")
    qrels = read_qrels(d / f"qrels/{split}.tsv")
    # a neutral path: Pyserini reads any topics path containing 'cacm' or 'beir' with special readers
    with tempfile.TemporaryDirectory(prefix="hypencoder-topics-") as tmp_dir, atomic_path(run) as out:
        topics = Path(tmp_dir) / f"topics-{split}.tsv"
        write_topics(topics, {qid: queries[qid] for qid in qrels})
        _pyserini(["pyserini.search.lucene", "--index", str(index), "--topics", str(topics), "--output", str(out),
                   "--bm25", "--hits", str(depth), "--threads", str(threads)])
    return run


def _pyserini(args: List[str]) -> None:
    """Run a Pyserini module CLI in a child interpreter with this plugin's Java set-up."""
    import subprocess
    import sys
    code = ("import sys, runpy, pyserini_hypencoder; sys.argv = sys.argv[1:]; "
            "runpy.run_module(sys.argv[0], run_name='__main__')")
    proc = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
    if proc.returncode:
        tail = proc.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"pyserini {args[0]} failed: {tail[0]}")
