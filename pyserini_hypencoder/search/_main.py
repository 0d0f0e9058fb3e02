"""The search CLI: Pyserini's ``search.faiss`` flags over q-net search, plus ``--rerank RUN`` for reranking.

    python -m pyserini_hypencoder.search --topics T --index DIR --output run.trec [--hits 1000] [--bf16]
    python -m pyserini_hypencoder.search --topics T --rerank bm25.trec [--index DIR] [--corpus C | --lucene-index L]
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from tqdm import tqdm

from ..cli import ArgumentParser, add_ray_group, define_encoder_args, positive_int, set_threads, setup_logging
from ..formats.runs import OUTPUT_FORMATS, read_run, write_run
from ..formats.topics import read_topics
from ..strategies import STRATEGIES, get_strategy

logger = logging.getLogger(__name__)

DEFAULT_RUNTAG = "Hypencoder"
DEFAULT_RERANK_DEPTH = 100


def _search_param(text: str) -> Tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    name, value = text.split("=", 1)
    return name.strip(), value.strip()


def define_strategy_args(parser) -> None:
    """``--strategy`` and one flag per declared parameter (``--STRATEGY-PARAM``, older spellings hidden)."""
    group = parser.add_argument_group("search strategy")
    group.add_argument("--strategy", "--search", dest="strategy", choices=list(STRATEGIES), default="exact",
                       help="; ".join(f"{s.name}: {s.summary}" for s in STRATEGIES.values()) + " (default exact)")
    for strategy in STRATEGIES.values():
        for param in strategy.params:
            if param.type is bool:   # a switch away from the default
                kwargs = dict(action="store_const", const=not param.default)
                help_ = f"{strategy.name}: {'switch off' if param.default else 'switch on'}: {param.help}"
            else:
                kwargs = dict(choices=param.choices) if param.choices else dict(
                    type=positive_int if param.type is int and param.minimum == 1 else param.type,
                    metavar="N" if param.type is int else param.name.upper())
                help_ = f"{strategy.name}: {param.help}" + ("" if param.default is None else
                                                            f" (default {param.default})")
            group.add_argument(strategy.flag(param), dest=f"{strategy.name}__{param.name}", default=None, help=help_,
                               **kwargs)
            if param.aliases:
                group.add_argument(*param.aliases, dest=f"{strategy.name}__{param.name}", default=None,
                                   help=argparse.SUPPRESS, **kwargs)
    group.add_argument("--search-param", type=_search_param, action="append", default=[], metavar="NAME=VALUE",
                       help="a parameter of the chosen strategy by its name (repeatable)")


def given_params(args) -> Dict[str, Dict[str, object]]:
    """``{strategy: {param: value}}`` for the strategy flags that were given."""
    given: Dict[str, Dict[str, object]] = {}
    for strategy in STRATEGIES.values():
        for param in strategy.params:
            value = getattr(args, f"{strategy.name}__{param.name}")
            if value is not None:
                given.setdefault(strategy.name, {})[param.name] = value
    return given


def search_params(args) -> dict:
    """The chosen strategy's parameters from its flags and ``--search-param`` (checked by the registry)."""
    return {**given_params(args).get(args.strategy, {}), **dict(args.search_param)}


def define_dense_args(parser) -> None:
    """The Hypencoder side: index, encoder, strategy, and text sources for candidates the index lacks."""
    parser.add_argument("--index", metavar="DIR", help="index directory from pyserini_hypencoder.encode; several shards are searched as one without merging: DIR1,DIR2,... or a directory whose subdirectories are the shards")
    parser.add_argument("--force", action="store_true",
                        help="search an index whose meta.json names other encoder weights")
    define_encoder_args(parser, batch_size=32)
    define_strategy_args(parser)
    parser.add_argument("--corpus", metavar="PATH",
                        help="JSONL corpus (file or folder) with the text of candidates missing from --index")
    parser.add_argument("--lucene-index", metavar="DIR",
                        help="Pyserini Lucene index (--storeRaw) with the text of candidates missing from --index")


def define_output_args(parser, tag: str) -> None:
    parser.add_argument("--topics", required=True, metavar="FILE_OR_NAME",
                        help="qid<TAB>query TSV, JSONL ({id,title} / {_id,text}), or a Pyserini topic name")
    parser.add_argument("--output", required=True, metavar="FILE", help="run file to write")
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="trec")
    parser.add_argument("--hits", type=positive_int, default=1000, metavar="K", help="hits per query (1000)")
    parser.add_argument("--runtag", default=tag, help=f"run tag, last TREC column ({tag})")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m pyserini_hypencoder.search",
                            description="Search an index with Hypencoder q-nets, or rerank a first-stage run.")
    define_output_args(parser, DEFAULT_RUNTAG)
    parser.add_argument("--remove-query", action="store_true", help="drop hits whose docid equals the qid")
    define_dense_args(parser)
    ray = add_ray_group(parser, "hold each shard of --index in a Ray actor")
    ray.add_argument("--ray-cpus-per-shard", type=float, default=None, metavar="N",
                     help="CPUs each shard actor reserves (default: 1, less when there are more shards than CPUs)")
    rerank = parser.add_argument_group("reranking (instead of full search)")
    rerank.add_argument("--rerank", metavar="RUN",
                        help="first-stage run to rerank (TREC 6 columns or MS MARCO 3/4 columns)")
    rerank.add_argument("--rerank-depth", type=positive_int, default=None, metavar="N",
                        help=f"candidates reranked per query (default {DEFAULT_RERANK_DEPTH}); those below are dropped "
                             f"unless --rerank-keep-rest")
    rerank.add_argument("--rerank-keep-rest", action="store_true",
                        help="append the first-stage entries below --rerank-depth, in their order, scored below the "
                             "reranked ones (up to --hits in all)")
    return parser


SURROGATE_UNDER_RAY = ("--strategy surrogate ranks by inner products over every vector in one process; with --ray "
                       "use exact, graph or ivf")


def _check_args(args) -> None:
    if args.rerank is None:
        if args.index is None:
            raise ValueError("--index is required (or --rerank RUN with --corpus/--lucene-index)")
        if args.corpus or args.lucene_index or args.rerank_depth is not None or args.rerank_keep_rest:
            raise ValueError("--corpus, --lucene-index, --rerank-depth and --rerank-keep-rest are for reranking "
                             "(--rerank RUN)")
    elif args.strategy != "exact" or given_params(args) or args.search_param:
        raise ValueError("--strategy and its parameters apply to full search, not to --rerank")
    elif args.ray is not None:
        raise ValueError("--ray applies to full search, not to --rerank")
    if args.ray is not None and args.strategy == "surrogate":
        raise ValueError(SURROGATE_UNDER_RAY)
    if args.ray_cpus_per_shard is not None and args.ray is None:
        raise ValueError("--ray-cpus-per-shard needs --ray")
    for name, params in given_params(args).items():
        if name != args.strategy:
            flag = STRATEGIES[name].flag(STRATEGIES[name].param(next(iter(params))))
            raise ValueError(f"{flag} applies to --strategy {name}, not {args.strategy}")
    get_strategy(args.strategy).resolve(search_params(args))   # unknown or ill-typed parameters fail here
    if args.corpus and args.lucene_index:
        raise ValueError("give one text source: --corpus or --lucene-index")
    if args.rerank is not None and args.index is None and not (args.corpus or args.lucene_index):
        raise ValueError("--rerank needs --index, --corpus or --lucene-index for candidate vectors")
    if not args.runtag or any(c.isspace() for c in args.runtag):
        raise ValueError(f"--runtag must be one non-empty word, got {args.runtag!r}")
    if Path(args.output).is_dir():
        raise IsADirectoryError(f"{args.output}: output is a directory")


def search_topics(args, topics: Dict[str, str], encoder) -> Dict[str, List[Tuple[str, float]]]:
    from ._searcher import HypencoderSearcher
    options = dict(force=args.force, strategy=args.strategy, search_params=search_params(args))
    ray = getattr(args, "ray", None)   # the hybrid CLI's dense group has no --ray
    if ray is not None:
        from ..distributed import RayShardedSearcher
        searcher = RayShardedSearcher(args.index, encoder, ray=ray, cpus_per_shard=args.ray_cpus_per_shard,
                                      **options)
    else:
        searcher = HypencoderSearcher(args.index, encoder, **options)
    qids = list(topics)
    results: Dict[str, List[Tuple[str, float]]] = {}
    # --remove-query drops hits after retrieval, as Pyserini does, so fetch one extra.
    k = args.hits + 1 if args.remove_query else args.hits
    with tqdm(total=len(qids), desc="search", unit="query", disable=args.quiet) as bar:
        for start in range(0, len(qids), args.batch_size):
            batch = qids[start:start + args.batch_size]
            found = searcher.batch_search([topics[q] for q in batch], batch, k=k, threads=args.threads or 1)
            for qid in batch:
                results[qid] = [(h.docid, h.score) for h in found[qid]]
            bar.update(len(batch))
    if ray is not None:
        searcher.close()
    if args.strategy != "exact":
        share, n = searcher.scored_share, searcher.num_docs
        logger.info("%s search: the q-nets scored %.0f documents per query on average, %.1f%% of the %d", args.strategy,
                    share * n, 100 * share, n)
        if share > 0.5:
            logger.warning("the %s search scored %.0f%% of the documents per query: on a corpus this small it costs "
                           "about as much as --strategy exact (its defaults are sized for large corpora)",
                           args.strategy, 100 * share)
    return results


def rerank_topics(args, topics: Dict[str, str], encoder, run) -> Dict[str, List[Tuple[str, float]]]:
    from ..formats.corpus import JsonlCorpus, LuceneTexts
    from .rerank import HypencoderReranker
    texts = JsonlCorpus(args.corpus) if args.corpus else LuceneTexts(args.lucene_index) if args.lucene_index else None
    reranker = HypencoderReranker(encoder, index=args.index, texts=texts, force=args.force,
                                  batch_size=args.batch_size, progress=not args.quiet)
    return reranker.rerank(topics, run, depth=args.rerank_depth or DEFAULT_RERANK_DEPTH, threads=args.threads,
                           keep_rest=args.rerank_keep_rest)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    _check_args(args)
    set_threads(args.threads)
    if args.ray is not None:   # Ray missing, or its cluster unreachable: one line before the model loads
        from ..distributed import connect
        connect(args.ray)
    topics = read_topics(args.topics)
    run = read_run(args.rerank) if args.rerank else None
    if args.index:  # a malformed index fails before the model loads
        from ..index import open_index
        args.index = open_index(args.index)
    from ..encoders import HypencoderQueryEncoder
    encoder = HypencoderQueryEncoder(args.encoder, device=args.device, max_length=args.max_length, bf16=args.bf16,
                                     num_attention_heads=args.num_attention_heads)
    started = time.perf_counter()
    results = rerank_topics(args, topics, encoder, run) if run is not None else search_topics(args, topics, encoder)
    elapsed = time.perf_counter() - started
    if args.remove_query:
        results = {qid: [h for h in hits if h[0] != qid] for qid, hits in results.items()}
    lines = write_run(args.output, results, output_format=args.output_format, tag=args.runtag, max_hits=args.hits)
    logger.info("%s %d queries in %.1f s (%.1f ms/query, query encoding included); wrote %d lines to %s",
                "reranked" if run is not None else "searched", len(results), elapsed,
                1000 * elapsed / max(1, len(results)), lines, args.output)
    return 0
