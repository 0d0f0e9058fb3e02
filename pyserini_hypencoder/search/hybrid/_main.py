"""``python -m pyserini_hypencoder.search.hybrid dense ... sparse ... fusion ... run ...``: Pyserini's
``search.hybrid`` groups with a Hypencoder as the dense side.

    dense  --index DIR --encoder default [--bf16] [--strategy ...] [--rerank [--corpus C | --lucene-index L]]
    sparse --index LUCENE_DIR [--k1 0.9 --b 0.4] | --run RUN
    fusion --alpha 0.1 [--normalization] [--weight-on-dense] [--hits 1000]
    run    --topics T --output run.trec [--hits 1000] [--output-format trec|msmarco] [--runtag hybrid]

The sparse side is BM25 over a Lucene index, or the entries of a first-stage run.  With ``dense --rerank`` the
Hypencoder scores the sparse side's candidates instead of searching its index (a fused rerank).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ... import cli
from ...formats.runs import RunEntry, read_run, write_run
from ...formats.topics import read_topics
from ...strategies import get_strategy
from .._main import define_dense_args, define_output_args, rerank_topics, search_params, search_topics

logger = logging.getLogger(__name__)

PROG = "python -m pyserini_hypencoder.search.hybrid"
USAGE = f"usage: {PROG} dense --index DIR sparse --index LUCENE_DIR|--run RUN [fusion ...] run --topics T --output F"


def build_parsers() -> Dict[str, cli.ArgumentParser]:
    dense = cli.ArgumentParser(prog=f"{PROG} dense", description="the Hypencoder side")
    define_dense_args(dense)
    dense.add_argument("--rerank", action="store_true",
                       help="score the sparse side's candidates (top fusion --hits) instead of searching --index")
    sparse = cli.ArgumentParser(prog=f"{PROG} sparse", description="the sparse side: BM25 or a first-stage run")
    sparse.add_argument("--index", metavar="DIR", help="Pyserini Lucene index searched with BM25")
    sparse.add_argument("--run", metavar="RUN", help="first-stage run (any format the search CLI reads)")
    sparse.add_argument("--k1", type=float, default=0.9, help="BM25 k1 (0.9)")
    sparse.add_argument("--b", type=float, default=0.4, help="BM25 b (0.4)")
    fusion = cli.ArgumentParser(prog=f"{PROG} fusion", description="the fusion: alpha * sparse + dense")
    fusion.add_argument("--alpha", type=float, default=0.1, help="weight of the sparse scores (0.1, Pyserini's)")
    fusion.add_argument("--normalization", action="store_true",
                        help="scale each side's scores to (s - (min + max) / 2) / (max - min) first")
    fusion.add_argument("--weight-on-dense", action="store_true", help="alpha weighs the dense scores instead")
    fusion.add_argument("--hits", type=cli.positive_int, default=1000, metavar="K",
                        help="hits taken from each side (1000)")
    run = cli.ArgumentParser(prog=f"{PROG} run", description="topics and the run file")
    define_output_args(run, "hybrid")
    return {"dense": dense, "sparse": sparse, "fusion": fusion, "run": run}


def _check(dense, sparse, run) -> None:
    if (sparse.index is None) == (sparse.run is None):
        raise ValueError("sparse: give one of --index (a Lucene index) or --run (a first-stage run)")
    if not dense.rerank and dense.index is None:
        raise ValueError("dense: --index is required (or --rerank to score the sparse side's candidates)")
    if not dense.rerank and (dense.corpus or dense.lucene_index):
        raise ValueError("dense: --corpus and --lucene-index are for --rerank")
    if dense.rerank and dense.index is None and not (dense.corpus or dense.lucene_index):
        raise ValueError("dense: --rerank needs --index, --corpus or --lucene-index for candidate vectors")
    get_strategy(dense.strategy).resolve(search_params(dense))
    if dense.rerank and dense.strategy != "exact":
        raise ValueError("dense: --strategy applies to search, not to --rerank")
    if not run.runtag or any(c.isspace() for c in run.runtag):
        raise ValueError(f"run: --runtag must be one non-empty word, got {run.runtag!r}")
    if Path(run.output).is_dir():
        raise IsADirectoryError(f"{run.output}: output is a directory")


def sparse_hits(sparse, topics: Dict[str, str], k: int, threads: int) -> Dict[str, List[RunEntry]]:
    """Each topic's sparse entries in rank order: a first-stage run's top k, or BM25's k best."""
    if sparse.run:
        return {qid: entries[:k] for qid, entries in read_run(sparse.run).items()}
    path = Path(sparse.index)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: Lucene index directory not found")
    import pyserini_hypencoder  # noqa: F401  (Java before Pyserini)
    from ..._compat import LuceneSearcher
    searcher = LuceneSearcher(str(path))
    searcher.set_bm25(sparse.k1, sparse.b)
    qids = list(topics)
    found = searcher.batch_search([topics[q] for q in qids], qids, k=k, threads=threads)
    return {qid: [RunEntry(h.docid, rank, h.score) for rank, h in enumerate(found.get(qid, []), 1)] for qid in qids}


def main(argv: Optional[Sequence[str]] = None) -> int:
    groups = cli.parse_groups(build_parsers(), list(sys.argv[1:] if argv is None else argv), PROG,
                              required=("dense", "sparse", "run"), usage=USAGE)
    dense, sparse, fusion, run = groups["dense"], groups["sparse"], groups["fusion"], groups["run"]
    cli.setup_logging(dense.verbose, dense.quiet)
    _check(dense, sparse, run)
    cli.set_threads(dense.threads)
    topics = read_topics(run.topics)
    if dense.index:   # a malformed index fails before anything runs
        from ...index import open_index
        dense.index = open_index(dense.index)
    started = time.perf_counter()
    sparse_run = sparse_hits(sparse, topics, fusion.hits, dense.threads or 1)
    from ...encoders import HypencoderQueryEncoder
    encoder = HypencoderQueryEncoder(dense.encoder, device=dense.device, max_length=dense.max_length,
                                     bf16=dense.bf16, num_attention_heads=dense.num_attention_heads)
    dense.hits, dense.remove_query = fusion.hits, False
    if dense.rerank:
        dense.rerank_depth, dense.rerank_keep_rest = fusion.hits, False
        dense_run = rerank_topics(dense, topics, encoder, sparse_run)
    else:
        dense_run = search_topics(dense, topics, encoder)
    from ._fusion import fuse
    fused = {qid: fuse(dense_run.get(qid, []), [(e.docid, e.score) for e in sparse_run.get(qid, [])],
                       alpha=fusion.alpha, k=run.hits, normalization=fusion.normalization,
                       weight_on_dense=fusion.weight_on_dense)
             for qid in topics if qid in dense_run or sparse_run.get(qid)}
    lines = write_run(run.output, fused, output_format=run.output_format, tag=run.runtag, max_hits=run.hits)
    logger.info("fused %d queries in %.1f s; wrote %d lines to %s", len(fused), time.perf_counter() - started, lines,
                run.output)
    return 0
