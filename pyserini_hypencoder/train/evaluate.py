"""Evaluation runs for trained models on BEIR-style folders (full retrieval or re-ranking a run).

Used to measure the default model and its baselines; passage vectors come from the frozen-feature cache, so a
model that shares the backbone re-uses them.  Queries are scored through the search CLI's exact path (or its
reranker's candidate scoring) and written by its run writer, so the run equals ``pyserini_hypencoder.search``'s
over an index of the same vectors.

    python -m pyserini_hypencoder.train.evaluate --encoder DIR|default|zeroshot:BACKBONE \
        --data ../shared/data/scifact --split test --output run.trec [--rerank RUN] [--hits 1000]
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import torch

from ..cli import ArgumentParser, add_common_args, positive_int, run_cli, set_threads, setup_logging
from ..formats.corpus import JsonlCorpus
from ..formats.qrels import read_qrels
from ..formats.runs import rank_hits, write_run
from ..formats.topics import read_topics
from ..model.checkpoint import load_hypencoder
from . import cache
from .biencoder import BiEncoder, is_biencoder_dir
from .data import ranked_docids
from .evaluation import rescore, retrieve

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
    """The model's max lengths, defaulting to the search side's."""
    from ..encoders import DEFAULT_PASSAGE_MAX_LENGTH, DEFAULT_QUERY_MAX_LENGTH
    return {key: int(model.settings.get(key) or default) for key, default in
            (("query_max_length", DEFAULT_QUERY_MAX_LENGTH), ("passage_max_length", DEFAULT_PASSAGE_MAX_LENGTH))}


def split_qids(data: Path, split: str) -> list:
    """The queries of a split: those of ``topics.<split>.tsv`` (judged or not, as trec_eval ignores the others),
    else those of ``qrels/<split>.tsv``."""
    topics = data / f"topics.{split}.tsv"
    if topics.exists():
        return list(read_topics(topics))
    qrels = data / "qrels" / f"{split}.tsv"
    if not qrels.exists():
        raise FileNotFoundError(f"{data}: neither topics.{split}.tsv nor qrels/{split}.tsv")
    return list(read_qrels(qrels))


@torch.no_grad()
def run(model, data_dir, *, split: str, output, hits: int = 1000, rerank: Optional[str] = None,
        cache_dir=cache.DEFAULT_CACHE_DIR, tag: str = "hypencoder") -> Path:
    d = Path(data_dir)
    lengths = settings_of(model)
    queries = read_topics(d / "queries.jsonl")
    qids = split_qids(d, split)
    pids, ptexts = JsonlCorpus(d / "corpus.jsonl").read()
    candidates = ranked_docids(rerank) if rerank else None
    if candidates is not None:   # only the passages that some query re-ranks
        keep = {p for v in candidates.values() for p in v}
        sel = [i for i, p in enumerate(pids) if p in keep]
        pids, ptexts = [pids[i] for i in sel], [ptexts[i] for i in sel]
    pvec = cache.passage_vectors(model, ptexts, max_length=lengths["passage_max_length"], cache_dir=cache_dir)
    qfeat = cache.query_states(model, [queries[q] for q in qids], max_length=lengths["query_max_length"],
                               cache_dir=cache_dir)
    if candidates is None:
        found = retrieve(model, qfeat["states"], qfeat["mask"], pvec, pids, hits)
    else:
        row = {p: i for i, p in enumerate(pids)}
        cols = [[row[p] for p in candidates.get(qid, []) if p in row] for qid in qids]
        scores = rescore(model, qfeat["states"], qfeat["mask"], pvec, cols)
        found = [rank_hits((pids[c], s) for c, s in zip(c_row, s_row))[:hits] for c_row, s_row in zip(cols, scores)]
    out = Path(output)
    write_run(out, dict(zip(qids, found)), tag=tag)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--encoder", "--model", dest="encoder", required=True, metavar="PATH_OR_ID",
                   help="a Hypencoder checkpoint, 'default', a bi-encoder directory or zeroshot:BACKBONE")
    p.add_argument("--data", required=True, metavar="DIR", help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/)")
    p.add_argument("--split", default="test")
    p.add_argument("--output", required=True, metavar="RUN")
    p.add_argument("--hits", type=positive_int, default=1000, metavar="K")
    p.add_argument("--rerank", metavar="RUN", help="first-stage run whose candidates are re-ranked (any run format)")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help=f"frozen-backbone feature cache (default {cache.DEFAULT_CACHE_DIR})")
    add_common_args(p)
    args = p.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    set_threads(args.threads)
    run(load_scorer(args.encoder), args.data, split=args.split, output=args.output, hits=args.hits,
        rerank=args.rerank, cache_dir=Path(args.cache_dir) if args.cache_dir else cache.DEFAULT_CACHE_DIR)
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(run_cli(main, prog=PROG))
