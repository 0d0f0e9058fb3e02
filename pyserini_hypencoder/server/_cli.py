"""What the REST and MCP servers share on the command line: the indexes (``--index NAME=DIR``), their text sources,
the encoder and strategy flags of the search CLI, the batching and load limits; and :func:`serve`, which runs a
network server on a thread of its own while the main thread runs the batches, and stops it gracefully.

SIGTERM (or SIGINT): the listening socket closes and new queries are refused (503), the queries already accepted
are searched and answered, then the process exits 0.  A second signal stops at once.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from typing import Callable, Dict, Optional

from ..cli import ArgumentParser, define_encoder_args, positive_int, set_threads, setup_logging
from ..search._main import define_strategy_args, search_params
from .service import DEFAULT_MAX_HITS, ServedIndex, Service

logger = logging.getLogger("pyserini_hypencoder.server")

RESERVED = ("indexes", "health")   # route words that an index name would shadow


def _named(text: str):
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    name, path = (part.strip() for part in text.split("=", 1))
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    if "/" in name or name in RESERVED or any(c.isspace() for c in name):
        raise argparse.ArgumentTypeError(f"index name {name!r}: one word without '/', not {' or '.join(RESERVED)}")
    return name, path


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def define_server_args(parser, *, port: int) -> None:
    parser.add_argument("--index", type=_named, action="append", required=True, metavar="NAME=DIR",
                        help="an index directory from pyserini_hypencoder.encode, served as NAME (repeatable)")
    parser.add_argument("--corpus", type=_named, action="append", default=[], metavar="NAME=FILE",
                        help="JSONL corpus (file or folder) with the text of index NAME (default: the corpus its "
                             "meta.json records)")
    parser.add_argument("--lucene-index", type=_named, action="append", default=[], metavar="NAME=DIR",
                        help="Pyserini Lucene index (--storeRaw) with the text of index NAME")
    parser.add_argument("--force", action="store_true",
                        help="serve indexes whose meta.json names other encoder weights")
    define_encoder_args(parser, batch_size=32)
    define_strategy_args(parser)
    net = parser.add_argument_group("serving")
    net.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    net.add_argument("--port", type=int, default=port, help=f"port (default {port}; 0 picks a free one)")
    net.add_argument("--batch-wait-ms", type=_non_negative_float, default=2.0, metavar="MS",
                     help="how long the oldest waiting query waits for batch mates under load (default 2; an idle "
                          "server runs a lone query at once)")
    net.add_argument("--batch-wait-always", action="store_true",
                     help="wait --batch-wait-ms for batch mates also when the server is idle")
    net.add_argument("--max-queue", type=positive_int, default=256, metavar="N",
                     help="queries waiting at most; beyond, a 503 with Retry-After (default 256)")
    net.add_argument("--timeout", type=_positive_float, default=30.0, metavar="S",
                     help="seconds a request waits for its answer before a 504 (default 30)")
    net.add_argument("--max-hits", type=positive_int, default=DEFAULT_MAX_HITS, metavar="K",
                     help=f"the largest hits a request may ask for (default {DEFAULT_MAX_HITS})")
    net.add_argument("--access-log", action="store_true", help="log every request on stderr")


def _check(args) -> None:
    names = [name for name, _ in args.index]
    if len(set(names)) != len(names):
        raise ValueError(f"index name given twice: {next(n for n in names if names.count(n) > 1)}")
    for flag, pairs in (("--corpus", args.corpus), ("--lucene-index", args.lucene_index)):
        for name, _ in pairs:
            if name not in names:
                raise ValueError(f"{flag} {name}=...: no --index {name}=DIR")
    both = {n for n, _ in args.corpus} & {n for n, _ in args.lucene_index}
    if both:
        raise ValueError(f"index {sorted(both)[0]}: give one text source, --corpus or --lucene-index")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port must be in [0, 65535], got {args.port}")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("binding %s: the server has no authentication; anyone who reaches that address can search",
                       args.host)


def build_service(args) -> Service:
    """Open every index (a malformed one fails before the model loads), load the encoder once, and make one
    searcher per index with its text source (the corpus's offset table is built here, not on a first request)."""
    _check(args)
    from ..index import DenseIndex
    opened = {name: DenseIndex.open(path) for name, path in args.index}
    from ..encoders import HypencoderQueryEncoder
    from ..search import HypencoderSearcher
    from ..strategies import get_strategy
    params = search_params(args)
    get_strategy(args.strategy).resolve(params)
    encoder = HypencoderQueryEncoder(args.encoder, device=args.device, max_length=args.max_length, bf16=args.bf16,
                                     num_attention_heads=args.num_attention_heads)
    corpora, lucene = dict(args.corpus), dict(args.lucene_index)
    served: Dict[str, ServedIndex] = {}
    for name, index in opened.items():
        searcher = HypencoderSearcher(index, encoder, force=args.force, strategy=args.strategy, search_params=params,
                                      corpus=corpora.get(name), lucene_index=lucene.get(name))
        source = (f"corpus {corpora[name]}" if name in corpora else f"lucene index {lucene[name]}" if name in lucene
                  else None)
        if source is None and index.meta.get("corpus"):
            source = f"corpus {index.meta['corpus'].get('path')} (recorded in meta.json)"
        if source is not None and index.num_docs:
            try:
                searcher.doc(index.docids[0])   # builds the offset table now
            except (FileNotFoundError, ValueError) as exc:
                if name in corpora or name in lucene:
                    raise
                logger.warning("index %s: no document text (%s); candidates get an empty document_txt", name, exc)
                source = None
        if source is None:
            logger.warning("index %s: no text source (--corpus %s=FILE or --lucene-index %s=DIR gives one)",
                           name, name, name)
        served[name] = ServedIndex(name, searcher, text_source=source)
        logger.info("index %s: %s, %d documents, strategy %s, text from %s", name, index.path, index.num_docs,
                    args.strategy, source or "nowhere")
    return Service(served, encoder_name=args.encoder, max_batch=args.batch_size, max_wait=args.batch_wait_ms / 1000,
                   max_queue=args.max_queue, max_hits=args.max_hits, timeout=args.timeout,
                   wait_when_idle=args.batch_wait_always)


def serve(service: Service, app, args, *, what: str) -> int:
    """Run ``app`` (an ASGI app) under uvicorn on a thread, and the batches on this (the main) thread, until a
    signal; 0 after a graceful stop, 1 when the server could not start (e.g. the port is taken)."""
    import uvicorn
    config = uvicorn.Config(app, host=args.host, port=args.port, access_log=args.access_log, log_config=None,
                            log_level="info" if args.access_log else "warning", lifespan="on",
                            timeout_graceful_shutdown=int(service.timeout) + 5)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    return run_with_batches(service, thread, what=what, started=lambda: server.started,
                            address=lambda: _address(server), stop=lambda: setattr(server, "should_exit", True),
                            force=lambda: setattr(server, "force_exit", True))


def _address(server) -> str:
    for s in server.servers:
        for sock in s.sockets:
            host, port = sock.getsockname()[:2]
            return f"http://{host}:{port}"
    return "?"


def run_with_batches(service: Service, thread: threading.Thread, *, what: str, started: Callable[[], bool],
                     address: Callable[[], str], stop: Callable[[], None],
                     force: Optional[Callable[[], None]] = None, alive: Optional[Callable[[], bool]] = None) -> int:
    """Start ``thread`` (the network side) and run batches here while ``alive()`` (default: the thread lives);
    a signal calls ``stop()`` (the second one ``force()``), then what is queued still runs."""
    alive = alive or thread.is_alive
    signals = {"count": 0}

    def on_signal(signum, frame):
        signals["count"] += 1
        service.stopping = True
        service.batcher.close()
        if signals["count"] == 1:
            logger.info("%s: stopping (%s): no new queries, finishing %d queued", what,
                        signal.Signals(signum).name, service.batcher.queued)
            stop()
        elif force is not None:
            force()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    announced = False
    thread.start()
    try:
        while alive():
            service.batcher.run_once(timeout=0.05)
            if not announced and started():
                announced = True
                logger.info("%s serving on %s (indexes: %s)", what, address(), ", ".join(service.indexes))
        service.batcher.close()
        while service.batcher.queued:   # accepted before the listener closed, answered to nobody now
            service.batcher.run_once(timeout=0)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        service.close()
    if not announced:
        logger.error("%s: the server did not start (see the message above)", what)
        return 1
    logger.info("%s stopped: %d queries in %d batches", what, service.batcher.queries, service.batcher.batches)
    return 0


def main_for(build_parser: Callable[[], ArgumentParser], start: Callable[[Service, argparse.Namespace], int],
             argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    logging.getLogger("pyserini_hypencoder.server").setLevel(logging.INFO)
    set_threads(args.threads)
    started = time.perf_counter()
    service = build_service(args)
    logger.info("loaded in %.1f s", time.perf_counter() - started)
    sys.stdout.flush()
    return start(service, args)
