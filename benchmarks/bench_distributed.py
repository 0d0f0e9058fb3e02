"""Local vs Ray, side by side on the same cores: encode throughput (local chunk encoder vs one Ray actor with the
same threads: Ray's overhead), and search latency per query batch (the merged index, its shards searched as one,
the shards in Ray actors; the median of ``--rounds`` passes, the searchers taken in turn).  The Ray instance runs
inside a network namespace with only ``lo`` (needs root), as tests/test_ray_cluster.py does, and every process in
it is killed afterwards.

    python benchmarks/bench_distributed.py --corpus ../shared/data/scifact/corpus.jsonl \\
        --docs 768 --shards runs/sharded-check/scifact/shards --merged runs/sharded-check/scifact/merged \\
        --topics ../shared/data/scifact/topics.test.tsv --queries 64 --threads 2
"""
import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path


def driver(args):
    """Runs inside the namespace: every measurement, printed as one JSON line."""
    import torch
    torch.set_num_threads(args.threads)
    from itertools import islice
    from pyserini_hypencoder.distributed import RayChunkEncoder, RayShardedSearcher
    from pyserini_hypencoder.encoders import ChunkEncoder, HypencoderDocumentEncoder, HypencoderQueryEncoder
    from pyserini_hypencoder.formats.corpus import JsonlCorpus
    from pyserini_hypencoder.formats.topics import read_topics
    from pyserini_hypencoder.search import HypencoderSearcher
    texts = [t for _, t in islice(JsonlCorpus(args.corpus, fields=["title", "text"]), args.docs)]
    chunks = [texts[i:i + args.chunk_size] for i in range(0, len(texts), args.chunk_size)]
    out = {"docs": len(texts), "threads": args.threads}
    encoder = HypencoderDocumentEncoder("default", bf16=True)
    local = ChunkEncoder(encoder, batch_size=32)
    local.encode(chunks[0][:64])   # warm
    t = time.perf_counter()
    for c in chunks:
        local.encode(c)
    out["encode_local_docs_s"] = len(texts) / (time.perf_counter() - t)
    pool = RayChunkEncoder(args.address, dict(model_name="default", bf16=True), batch_size=32, actors=1,
                           cpus_per_actor=args.threads)
    list(pool([chunks[0][:64]], lambda n: None))   # actor started and warm
    t = time.perf_counter()
    list(pool(chunks, lambda n: None))
    out["encode_ray_docs_s"] = len(texts) / (time.perf_counter() - t)
    pool.close()
    topics = read_topics(args.topics)
    qids = list(topics)[:args.queries]
    batches = [qids[i:i + 32] for i in range(0, len(qids), 32)]
    qenc = HypencoderQueryEncoder("default", bf16=True)
    encoded = [qenc.encode_batch([topics[q] for q in b]) for b in batches]   # q-nets once: scoring only

    def one_pass(searcher):   # ms per batch over every batch once
        t = time.perf_counter()
        for qn, b in zip(encoded, batches):
            searcher.batch_search(qn, b, k=1000)
        return 1000 * (time.perf_counter() - t) / len(batches)

    searchers = {"merged": HypencoderSearcher(args.merged, qenc), "sharded": HypencoderSearcher(args.shards, qenc),
                 "ray": RayShardedSearcher(args.shards, qenc, ray=args.address)}
    for searcher in searchers.values():   # warm: maps read, actors started
        searcher.batch_search(encoded[0], batches[0], k=1000)
    passes = {name: [] for name in searchers}
    for _ in range(args.rounds):   # interleaved, so a slow spell of the shared cores hits every searcher alike
        for name, searcher in searchers.items():
            passes[name].append(one_pass(searcher))
    for name, values in passes.items():
        out[f"search_{name}_ms_per_batch"] = statistics.median(values)
        out[f"search_{name}_passes_ms"] = values
    out["rounds"] = args.rounds
    out["shards"] = len(searchers["ray"].index.shards)
    searchers["ray"].close()
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "shards", "merged", "topics"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--docs", type=int, default=1024)
    p.add_argument("--chunk-size", type=int, default=256)
    p.add_argument("--queries", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7, help="interleaved passes over the query batches per searcher")
    p.add_argument("--address", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.address:
        return driver(args)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # a timeout still runs the clean-up
    from pyserini_hypencoder.distributed.loopback import loopback_cluster, run_in
    package_root = str(Path(__file__).resolve().parents[1])
    env = dict(PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    with loopback_cluster([args.threads], env=env, prefix="hxbench") as cluster:
        result = run_in(cluster, [__file__, *sys.argv[1:], "--address", cluster["address"]], timeout=1800)
    if result.returncode:
        sys.exit(result.stderr[-3000:])
    r = json.loads(result.stdout.strip().splitlines()[-1])
    overhead = 100 * (r["encode_local_docs_s"] / r["encode_ray_docs_s"] - 1)
    print(f"encode, {r['docs']} docs, {r['threads']} threads: local {r['encode_local_docs_s']:.1f} docs/s | "
          f"Ray (1 actor, {r['threads']} CPUs) {r['encode_ray_docs_s']:.1f} docs/s | Ray overhead {overhead:+.1f}%")
    print(f"search, ms per batch of 32 queries (k=1000, q-nets pre-encoded; median of {r['rounds']} interleaved "
          f"passes): merged {r['search_merged_ms_per_batch']:.1f} | "
          f"{r['shards']} shards as one {r['search_sharded_ms_per_batch']:.1f}"
          f" | {r['shards']} shards in Ray actors {r['search_ray_ms_per_batch']:.1f}")


if __name__ == "__main__":
    main()
