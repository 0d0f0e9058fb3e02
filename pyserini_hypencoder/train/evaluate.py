"""Evaluation runs for trained models on BEIR-style folders (full retrieval or re-ranking a run).

Used to measure the default model and its baselines; passage vectors come from the frozen-feature
cache, so a model that shares the backbone re-uses them.  Writes a TREC run file.

    python -m pyserini_hypencoder.train.evaluate --model DIR|default|zeroshot:BACKBONE \
        --data ../shared/data/scifact --split test --output run.trec [--rerank RUN] [--hits 1000]
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..cli import ArgumentParser, positive_int, run_cli, set_threads, setup_logging
from ..model.checkpoint import load_hypencoder
from ..runfiles import rank_hits, write_run
from . import cache
from .biencoder import BiEncoder, is_biencoder_dir
from .data import read_corpus, read_qrels, read_queries, read_run
from .trainer import score_matrix

logger = logging.getLogger(__name__)
PROG = "python -m pyserini_hypencoder.train.evaluate"


def load_scorer(spec: str):
    """A Hypencoder checkpoint/'default', a bi-encoder directory, or ``zeroshot:BACKBONE`` (mean pooling, cosine)."""
    if spec.startswith("zeroshot:"):
        from ..model.checkpoint import load_backbone
        backbone, tok, source = load_backbone(spec.split(":", 1)[1])
        model = BiEncoder(backbone, tok, pooling="mean", normalize=True, settings={"backbone": source})
        model.settings.update(query_max_length=256, passage_max_length=256)   # sentence-transformers' setting
        return model.eval()
    if is_biencoder_dir(spec):
        return BiEncoder.load(spec)
    return load_hypencoder(spec)


def settings_of(model) -> dict:
    s = model.settings.get("settings", model.settings) if isinstance(model, BiEncoder) else model.settings
    from ..encoders import DEFAULT_PASSAGE_MAX_LENGTH, DEFAULT_QUERY_MAX_LENGTH   # the search side's defaults
    return {"query_max_length": int(s.get("query_max_length") or DEFAULT_QUERY_MAX_LENGTH),
            "passage_max_length": int(s.get("passage_max_length") or DEFAULT_PASSAGE_MAX_LENGTH)}


@torch.no_grad()
def run(model, data_dir, *, split: str, output, hits: int = 1000, rerank: Optional[str] = None,
        cache_dir=cache.DEFAULT_CACHE_DIR, tag: str = "hypencoder") -> Path:
    d = Path(data_dir)
    lengths = settings_of(model)
    queries = read_queries(d / "queries.jsonl")
    qids = list(read_qrels(d / f"qrels/{split}.tsv")) if (d / f"qrels/{split}.tsv").exists() else None
    if qids is None:
        qids = [line.split("\t", 1)[0] for line in open(d / f"topics.{split}.tsv", encoding="utf-8")]
    # queries of a split are the topics file's (also the unjudged ones, as trec_eval ignores them)
    topics = d / f"topics.{split}.tsv"
    if topics.exists():
        qids = [line.split("\t", 1)[0] for line in open(topics, encoding="utf-8") if line.strip()]
    pids, ptexts = read_corpus(d / "corpus.jsonl")
    candidates = read_run(rerank) if rerank else None
    if candidates is not None:   # only the passages that some query re-ranks
        keep = {p for v in candidates.values() for p in v}
        sel = [i for i, p in enumerate(pids) if p in keep]
        pids, ptexts = [pids[i] for i in sel], [ptexts[i] for i in sel]
    pvec = cache.passage_vectors(model, ptexts, max_length=lengths["passage_max_length"], cache_dir=cache_dir)
    qfeat = cache.query_states(model, [queries[q] for q in qids], max_length=lengths["query_max_length"],
                               cache_dir=cache_dir)
    scores = score_matrix(model, qfeat["states"], qfeat["mask"], pvec)
    row = {p: i for i, p in enumerate(pids)}
    results = {}
    for i, qid in enumerate(qids):
        if candidates is not None:
            cols = [row[p] for p in candidates.get(qid, []) if p in row]
            hits_of_query = [(pids[c], float(scores[i, c])) for c in cols]
        else:
            s, idx = scores[i].topk(min(hits, scores.shape[1]))
            hits_of_query = [(pids[j], float(v)) for v, j in zip(s.tolist(), idx.tolist())]
        results[qid] = rank_hits(hits_of_query)[:hits]   # as the search CLI orders a run
    out = Path(output)
    write_run(out, results, tag=tag)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="a Hypencoder checkpoint, 'default', a bi-encoder directory or "
                                                   "zeroshot:BACKBONE")
    p.add_argument("--data", required=True, metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True, metavar="RUN")
    p.add_argument("--hits", type=positive_int, default=1000)
    p.add_argument("--rerank", metavar="RUN", help="TREC run whose candidates are re-ranked")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help=f"frozen-backbone feature cache (default {cache.DEFAULT_CACHE_DIR})")
    args = p.parse_args(argv)
    setup_logging()
    set_threads(args.threads)
    run(load_scorer(args.model), args.data, split=args.split, output=args.output, hits=args.hits,
        rerank=args.rerank, cache_dir=Path(args.cache_dir) if args.cache_dir else cache.DEFAULT_CACHE_DIR)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(run_cli(main, prog=PROG))
