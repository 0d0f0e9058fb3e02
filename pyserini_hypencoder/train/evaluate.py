"""Evaluation runs for trained models on BEIR-style folders (full retrieval or re-ranking a run).

Used to measure the default model and its baselines; passage vectors come from the frozen-feature
cache, so a model that shares the backbone re-uses them.  Writes a TREC run file.

    python -m pyserini_hypencoder.train.evaluate --model DIR|default|zeroshot:BACKBONE \
        --data ../shared/data/scifact --split test --output run.trec [--rerank RUN] [--hits 1000]
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..cli import run_cli, setup_logging
from ..model.checkpoint import load_hypencoder
from . import cache
from .biencoder import BiEncoder, is_biencoder_dir
from .data import read_corpus, read_qrels, read_queries, read_run
from .trainer import score_matrix

logger = logging.getLogger(__name__)


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
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w") as f:
        for i, qid in enumerate(qids):
            if candidates is not None:
                cols = [row[p] for p in candidates.get(qid, []) if p in row]
                pairs = [(float(scores[i, c]), pids[c]) for c in cols]
            else:
                s, idx = scores[i].topk(min(hits, scores.shape[1]))
                pairs = [(float(v), pids[j]) for v, j in zip(s.tolist(), idx.tolist())]
            pairs.sort(key=lambda x: (-x[0], x[1]))
            for rank, (s, p) in enumerate(pairs[:hits], 1):
                f.write(f"{qid} Q0 {p} {rank} {s:.6f} {tag}\n")
    tmp.replace(out)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pyserini_hypencoder.train.evaluate", description=__doc__)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True)
    p.add_argument("--hits", type=int, default=1000)
    p.add_argument("--rerank", help="TREC run whose candidates are re-ranked")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    setup_logging()
    if args.threads:
        torch.set_num_threads(args.threads)
    run(load_scorer(args.model), args.data, split=args.split, output=args.output, hits=args.hits,
        rerank=args.rerank)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(run_cli(main, prog="pyserini_hypencoder.train.evaluate"))
