"""What batch-invariant query encoding costs: each query alone against padded batches, fp32 and bf16.

    python benchmarks/bench_query_encoding.py [--topics FILE] [--num-queries 128] [--batch-size 32] [--threads 2]
                                              [--encoder default] [--repeats 3] [--quick] [--json OUT.json]

The plugin encodes each query on its own, in fp32 (``HypencoderQueryEncoder.encode_batch``), so that a query's
q-net does not depend on its batch mates.  This script times, side by side in one run (the modes interleaved,
each repeat over the same queries, the best repeat kept), milliseconds per query for:

* ``alone fp32``    the plugin's path;
* ``alone bf16``    the same under bf16 autocast, one call per query (autocast casts the weights on every call);
* ``padded fp32``   padded batches of ``--batch-size`` (what encoders usually do);
* ``padded bf16``   padded batches under bf16 autocast.

It also prints how far a padded batch moves each query's q-net from its own: the largest difference of any q-net
weight, and of the q-net's score of 256 random unit vectors (fp32).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyserini_hypencoder.encoders import HypencoderQueryEncoder  # noqa: E402
from pyserini_hypencoder.formats import read_topics  # noqa: E402
from pyserini_hypencoder.model.qnet import QNetBatch  # noqa: E402
from pyserini_hypencoder.model.tokenize import each_alone, tokenize  # noqa: E402

DEFAULT_TOPICS = ROOT.parent / "shared" / "data" / "scifact" / "topics.test.tsv"
SYNTHETIC = ["what causes fever in children", "hypernetworks for retrieval", "effects of vitamin d on bone density",
             "how do neural networks learn representations of text", "capital of france"]


def queries_from(path: Path, count: int) -> list:
    if path.is_file():
        texts = list(read_topics(str(path)).values())
    else:
        print(f"{path} not found: using {len(SYNTHETIC)} built-in queries, repeated", file=sys.stderr)
        texts = SYNTHETIC
    return [texts[i % len(texts)] for i in range(count)]


def encoders(encoder, queries, max_length, batch_size):
    """Mode name -> a function encoding all ``queries`` into one QNetBatch."""
    model, tok = encoder.model, encoder.tokenizer

    def alone(bf16):
        return lambda: QNetBatch.concat([model.encode_queries(ids, mask, bf16=bf16)
                                         for ids, mask in each_alone(tok, queries, max_length)])

    def padded(bf16):
        def run():
            parts = []
            for start in range(0, len(queries), batch_size):
                ids, mask = tokenize(tok, queries[start:start + batch_size], max_length)
                parts.append(model.encode_queries(ids, mask, bf16=bf16))
            return QNetBatch.concat(parts)
        return run

    return {"alone fp32": alone(False), "alone bf16": alone(True), "padded fp32": padded(False),
            "padded bf16": padded(True)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topics", type=Path, default=DEFAULT_TOPICS)
    parser.add_argument("--num-queries", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encoder", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="16 queries, batches of 8, one repeat")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_queries, args.batch_size, args.repeats = 16, 8, 1
    torch.set_num_threads(args.threads)
    encoder = HypencoderQueryEncoder(args.encoder)
    queries = queries_from(args.topics, args.num_queries)
    modes = encoders(encoder, queries, encoder.max_length, args.batch_size)
    best = {name: float("inf") for name in modes}
    with torch.no_grad():
        for run in modes.values():   # warm-up: first calls allocate and pick kernels
            run()
        for _ in range(args.repeats):
            for name, run in modes.items():
                started = time.perf_counter()
                run()
                best[name] = min(best[name], (time.perf_counter() - started) * 1000 / len(queries))
        reference = encoder.encode_batch(queries)          # the plugin's own path, must equal "alone fp32"
        alone, padded = modes["alone fp32"](), modes["padded fp32"]()
        docs = torch.nn.functional.normalize(torch.randn(256, reference.weights[0].shape[1],
                                                         generator=torch.Generator().manual_seed(0)), dim=1)
        weight_gap = max(float((a - b).abs().max()) for a, b in zip(padded.weights + padded.biases,
                                                                      alone.weights + alone.biases))
        score_gap = float((padded.score(docs) - alone.score(docs)).abs().max())
    same = all(torch.equal(a, b) for a, b in zip(reference.weights + reference.biases, alone.weights + alone.biases))
    print(f"{len(queries)} queries, {args.threads} threads, batches of {args.batch_size}, best of {args.repeats}")
    for name, ms in best.items():
        print(f"  {name:<12} {ms:7.2f} ms/query   {best['alone fp32'] / ms:5.2f}x the plugin's path")
    print(f"  padded fp32 against alone: largest q-net weight difference {weight_gap:.3g}, largest score "
          f"difference {score_gap:.3g}")
    print(f"  the encoder's encode_batch equals 'alone fp32' bit for bit: {same}")
    if args.json:
        args.json.write_text(json.dumps({"queries": len(queries), "threads": args.threads,
                                         "batch_size": args.batch_size, "ms_per_query": best,
                                         "padded_weight_gap": weight_gap, "padded_score_gap": score_gap,
                                         "plugin_path_is_alone_fp32": same}, indent=1))
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
