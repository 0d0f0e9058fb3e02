"""``python -m pyserini_hypencoder.encode input ... output ... encoder ...`` (Pyserini's grouped arguments) and
``python -m pyserini_hypencoder.encode.merge``."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Dict, Optional, Sequence

from .. import cli
from ..index import STORAGE_DTYPES

logger = logging.getLogger(__name__)

PROG = "python -m pyserini_hypencoder.encode"
USAGE = f"usage: {PROG} input --corpus PATH output --embeddings DIR [encoder --encoder ID]"


def build_parsers() -> Dict[str, argparse.ArgumentParser]:
    parsers = {}
    p = parsers["input"] = cli.ArgumentParser(prog=f"{PROG} input", description="the corpus to encode")
    p.add_argument("--corpus", required=True, metavar="PATH",
                   help="JSONL file or folder (Pyserini id/contents or BEIR _id/title/text; .gz too)")
    p.add_argument("--fields", nargs="+", default=None, metavar="FIELD",
                   help="fields to encode (default: title + text for BEIR records, contents for Pyserini ones)")
    p.add_argument("--docid-field", default=None, metavar="FIELD", help="docid field (default: id, _id or docid)")
    p.add_argument("--delimiter", default="\n", help="splits 'contents' into --fields (default: newline)")
    p.add_argument("--shard-id", type=cli.non_negative_int, default=0, metavar="I")
    p.add_argument("--shard-num", type=cli.positive_int, default=1, metavar="N")

    p = parsers["output"] = cli.ArgumentParser(prog=f"{PROG} output", description="the index directory")
    p.add_argument("--embeddings", required=True, metavar="DIR", help="index directory to write")
    p.add_argument("--storage-dtype", choices=STORAGE_DTYPES, default="float32",
                   help="dtype of the searched vectors (16-bit adds vectors.npy; 'index' stays float32)")
    p.add_argument("--parquet", action="store_true", help="also write vectors.parquet (columns id, vector)")
    p.add_argument("--chunk-size", type=cli.positive_int, default=4096, metavar="N",
                   help="documents per resumable chunk (default 4096)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing non-empty index directory")
    p.add_argument("--to-faiss", action="store_true", help=argparse.SUPPRESS)  # Pyserini's flag; always faiss

    p.add_argument("--ray-shards", type=cli.positive_int, default=None, metavar="N",
                   help="with --ray: write N shard indexes DIR/part-0..N-1 (searched as one by --index DIR)")

    p = parsers["encoder"] = cli.ArgumentParser(prog=f"{PROG} encoder", description="the document encoder")
    cli.define_encoder_args(p)
    r = cli.add_ray_group(p, "encode with a pool of Ray actors")
    r.add_argument("--ray-actors", type=cli.positive_int, default=None, metavar="N",
                   help="encoder actors (default: the cluster's CPUs / --ray-cpus-per-actor)")
    r.add_argument("--ray-cpus-per-actor", type=cli.positive_int, default=1, metavar="N",
                   help="CPUs (torch threads) per actor (default 1)")
    r.add_argument("--ray-gpus-per-actor", type=float, default=0, metavar="G",
                   help="GPUs per actor (default 0; > 0 puts the model on cuda)")
    return parsers


def parse_args(argv: Optional[Sequence[str]] = None) -> Dict[str, argparse.Namespace]:
    return cli.parse_groups(build_parsers(), list(sys.argv[1:] if argv is None else argv), PROG,
                            required=("input", "output"), usage=USAGE)


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    inp, out, enc = args["input"], args["output"], args["encoder"]
    cli.setup_logging(enc.verbose, enc.quiet)
    cli.set_threads(enc.threads)
    from ..formats.corpus import JsonlCorpus
    from ..index import check_target
    from ._shard import check_shard

    # Everything the user can get wrong is checked before the model loads or anything is written.
    check_shard(inp.shard_id, inp.shard_num)
    out_dir = Path(out.embeddings).expanduser()
    if out.ray_shards is not None:
        if enc.ray is None:
            raise ValueError("--ray-shards needs --ray")
        if inp.shard_num > 1:
            raise ValueError("give --ray-shards or --shard-id/--shard-num, not both")
        if out_dir.is_file() or (out_dir.is_dir() and any(p.name not in _part_names(out.ray_shards) and
                                                          not p.name.startswith(".") for p in out_dir.iterdir())):
            raise ValueError(f"{out_dir}: holds files other than the shards part-0..{out.ray_shards - 1}")
        if out.overwrite:
            for name in _part_names(out.ray_shards):
                check_target(out_dir / name, overwrite=True)
    else:
        check_target(out_dir, overwrite=out.overwrite)
    corpus = JsonlCorpus(inp.corpus, fields=inp.fields, docid_field=inp.docid_field, delimiter=inp.delimiter)
    corpus.scan(progress=not enc.quiet)
    encode_chunks = None
    if enc.ray is not None:   # Ray missing or its cluster unreachable: one line, before anything is written
        from ..distributed import RayChunkEncoder
        encode_chunks = RayChunkEncoder(
            enc.ray, dict(model_name=enc.encoder, device=str(enc.device), max_length=enc.max_length, bf16=enc.bf16,
                          num_attention_heads=enc.num_attention_heads),
            batch_size=enc.batch_size, actors=enc.ray_actors, cpus_per_actor=enc.ray_cpus_per_actor,
            gpus_per_actor=enc.ray_gpus_per_actor)

    from ..encoders import HypencoderDocumentEncoder   # torch and Pyserini: only once the input is known good
    from ._encode import encode_corpus
    encoder = HypencoderDocumentEncoder(enc.encoder, device=enc.device, max_length=enc.max_length, bf16=enc.bf16,
                                        num_attention_heads=enc.num_attention_heads)
    common = dict(encoder_name=enc.encoder, batch_size=enc.batch_size, chunk_size=out.chunk_size,
                  storage_dtype=out.storage_dtype, overwrite=out.overwrite, parquet=out.parquet,
                  progress=not enc.quiet, encode_chunks=encode_chunks)
    try:
        if out.ray_shards is None:
            path = encode_corpus(corpus, encoder, out_dir, shard_id=inp.shard_id, shard_num=inp.shard_num, **common)
        else:   # each part atomic and resumable; a rerun skips the parts already written
            out_dir.mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(_part_names(out.ray_shards)):
                if (out_dir / name / "meta.json").is_file() and not out.overwrite:
                    logger.info("%s is complete; kept", out_dir / name)
                    continue
                encode_corpus(corpus, encoder, out_dir / name, shard_id=i, shard_num=out.ray_shards, **common)
            path = out_dir
    finally:
        if encode_chunks is not None:
            encode_chunks.close()
    print(path)
    return 0


def _part_names(n: int):
    return [f"part-{i}" for i in range(n)]


def merge_main(argv: Optional[Sequence[str]] = None) -> int:
    parser = cli.ArgumentParser(prog=f"{PROG}.merge", description="join shard indexes into one index")
    parser.add_argument("--shards", nargs="+", required=True, metavar="DIR", help="shard index directories")
    parser.add_argument("--output", required=True, metavar="DIR", help="index directory to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output")
    cli.add_common_args(parser)
    args = parser.parse_args(argv)
    cli.setup_logging(args.verbose, args.quiet)
    cli.set_threads(args.threads)
    from ..index import merge_indexes
    print(merge_indexes(args.shards, args.output, overwrite=args.overwrite))
    return 0
