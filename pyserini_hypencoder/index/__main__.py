"""Add an approximate-search structure to an index directory.

    python -m pyserini_hypencoder.index --index DIR --add graph [--neighbours 100 --method auto|exact|ivf|hnsw]
    python -m pyserini_hypencoder.index --index DIR --add ivf [--nlist N --niter 20]
    python -m pyserini_hypencoder.index --index DIR --add faiss-ivf [--faiss-nlist N --faiss-encoding sq8]

Files are written atomically and recorded (with their parameters) in meta.json "structures".
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from ..cli import ArgumentParser, add_common_args, positive_int, run_cli, set_threads, setup_logging

logger = logging.getLogger("pyserini_hypencoder.index")


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m pyserini_hypencoder.index", description=__doc__.split("\n")[0])
    p.add_argument("--index", required=True, metavar="DIR", help="index directory (written by the encoder)")
    p.add_argument("--add", required=True, choices=("graph", "ivf", "faiss-ivf"), help="structure to build")
    g = p.add_argument_group("graph")
    g.add_argument("--neighbours", "--neighbors", type=positive_int, default=100, metavar="K",
                   help="neighbours per document (default 100)")
    g.add_argument("--method", choices=("auto", "exact", "ivf", "hnsw"), default="auto",
                   help="neighbour search: exact (IndexFlatL2), ivf (IndexIVFFlat), hnsw; auto = exact up to "
                        "200,000 documents, ivf above (default auto)")
    g.add_argument("--graph-nlist", type=positive_int, default=None, metavar="N",
                   help="k-means lists of the ivf neighbour search (default: reuse the index's --add ivf "
                        "partition, else ~sqrt(N))")
    g.add_argument("--graph-nprobe", type=positive_int, default=8, metavar="N",
                   help="nearest lists each list is searched against (default 8)")
    g.add_argument("--hnsw-m", type=positive_int, default=32, metavar="M")
    g.add_argument("--ef-construction", type=positive_int, default=64, metavar="N")
    g.add_argument("--ef-search", type=positive_int, default=128, metavar="N")
    i = p.add_argument_group("ivf")
    i.add_argument("--nlist", type=positive_int, default=None, metavar="N",
                   help="k-means lists (default ~4 sqrt(N), at most N/8)")
    i.add_argument("--niter", type=positive_int, default=20, metavar="N", help="k-means iterations (default 20)")
    f = p.add_argument_group("faiss-ivf (the surrogate's inner-product first stage)")
    f.add_argument("--faiss-nlist", type=positive_int, default=None, metavar="N",
                   help="inverted lists (default ~sqrt(N), a power of two)")
    f.add_argument("--faiss-encoding", choices=("sq8", "fp16", "flat"), default="sq8",
                   help="codes stored per document: 8-bit scalar quantiser (d bytes), fp16 (2d) or flat fp32 (4d); "
                        "default sq8")
    f.add_argument("--faiss-train-size", type=positive_int, default=None, metavar="N",
                   help="k-means sample (default 64 per list, at least 65,536)")
    f.add_argument("--faiss-niter", type=positive_int, default=10, metavar="N", help="k-means iterations (default 10)")
    p.add_argument("--seed", type=int, default=1234)
    add_common_args(p)   # --threads: torch and faiss
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    set_threads(args.threads)
    if args.threads:
        import faiss
        faiss.omp_set_num_threads(args.threads)
    from ..ann import add_graph, add_ivf
    from . import DenseIndex

    index = DenseIndex.open(args.index)
    if args.add == "graph":
        info = add_graph(index, neighbours=args.neighbours, method=args.method, nlist=args.graph_nlist,
                         nprobe=args.graph_nprobe, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction,
                         ef_search=args.ef_search, seed=args.seed)
    elif args.add == "faiss-ivf":
        from ..ann.faiss_ip import add_faiss_ivf
        info = add_faiss_ivf(index, nlist=args.faiss_nlist, encoding=args.faiss_encoding, niter=args.faiss_niter,
                             train_size=args.faiss_train_size, seed=args.seed, progress=not args.quiet)
    else:
        info = add_ivf(index, nlist=args.nlist, niter=args.niter, seed=args.seed)
    logger.info("added %s to %s: %s", args.add, index.path, info)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m pyserini_hypencoder.index"))
