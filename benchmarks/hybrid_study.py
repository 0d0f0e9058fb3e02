"""How the hybrid search's recommended fusion was chosen, and what it gives: every step through the CLIs.

    python benchmarks/hybrid_study.py --work runs/hybrid-study [--data ../shared/data] [--json OUT.json]

For each BEIR-layout collection (Cranfield, CACM, SciFact test): a Lucene BM25 index and run
(``pyserini.index.lucene``, ``pyserini.search.lucene --bm25``, title and text in one field), a Hypencoder index
and exact run (``pyserini_hypencoder.encode`` / ``.search``, the default model, bf16), and hybrid runs
(``pyserini_hypencoder.search.hybrid ... sparse --run BM25``) over a grid of alpha x normalization; for the DL19
pool the fused rerank of BM25's top 100 (``dense --rerank``).  Each run is scored with trec_eval nDCG@10.

The fusion is chosen on one set only, Cranfield's odd-numbered queries, which neither trained the default model
(SciFact train) nor is reported as a result; every other number is a held-out check of that choice.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pyserini_hypencoder.formats import read_qrels, read_topics, write_json_collection, write_qrels, write_topics  # noqa
from pyserini_hypencoder.formats.corpus import JsonlCorpus  # noqa: E402
from pyserini_hypencoder.reproduce import evaluate  # noqa: E402

ALPHAS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
COLLECTIONS = ("cranfield", "cacm", "scifact")


def sh(*args) -> None:
    print("+", " ".join(map(str, args)), file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", *map(str, args)], check=True)


def prepare(name: str, data: Path, work: Path) -> dict:
    """Topics and qrels files (Cranfield split into tune/test halves), the two first-stage runs."""
    src, out = data / name, work / name
    out.mkdir(parents=True, exist_ok=True)
    topics, qrels = read_topics(src / "topics.test.tsv"), read_qrels(src / "qrels.test.txt")
    parts = {"test": list(topics)}
    if name == "cranfield":
        parts = {"tune": [q for q in topics if int(q) % 2], "test": [q for q in topics if not int(q) % 2]}
    files = {}
    neutral = work / "topics"   # Pyserini reads any topics path containing 'cacm' (or 'beir') with special readers
    neutral.mkdir(exist_ok=True)
    for part, qids in parts.items():
        topics_file = neutral / f"{COLLECTIONS.index(name)}-{part}.tsv"
        write_topics(topics_file, {q: topics[q] for q in qids})
        write_qrels(out / f"qrels-{part}.txt", {q: qrels[q] for q in qids if q in qrels})
        files[part] = (topics_file, out / f"qrels-{part}.txt")
    lucene, dense = out / "lucene", out / "hypencoder"
    if not lucene.exists():
        write_json_collection(JsonlCorpus(src / "corpus.jsonl"), out / "collection" / "docs.jsonl")
        sh("pyserini.index.lucene", "--collection", "JsonCollection", "--input", out / "collection", "--index", lucene,
           "--generator", "DefaultLuceneDocumentGenerator", "--threads", 2, "--storeRaw")
    if not dense.exists():
        sh("pyserini_hypencoder.encode", "input", "--corpus", src / "corpus.jsonl", "output", "--embeddings", dense,
           "encoder", "--encoder", "default", "--bf16", "--quiet")
    runs = {}
    for part, (topics_file, _) in files.items():
        bm25, exact = out / f"bm25-{part}.trec", out / f"exact-{part}.trec"
        if not bm25.exists():
            sh("pyserini.search.lucene", "--index", lucene, "--topics", topics_file, "--output", bm25, "--bm25",
               "--hits", 1000, "--threads", 2)
        if not exact.exists():
            sh("pyserini_hypencoder.search", "--topics", topics_file, "--index", dense, "--encoder", "default",
               "--bf16", "--quiet", "--hits", 1000, "--output", exact)
        runs[part] = (bm25, exact)
    return {"files": files, "runs": runs, "dense": dense}


def hybrid(prepared: dict, part: str, alpha: float, normalization: bool, out: Path) -> Path:
    topics_file = prepared["files"][part][0]
    bm25 = prepared["runs"][part][0]
    if not out.exists():
        sh("pyserini_hypencoder.search.hybrid", "dense", "--index", prepared["dense"], "--encoder", "default",
           "--bf16", "--quiet", "sparse", "--run", bm25, "fusion", "--alpha", alpha,
           *(["--normalization"] if normalization else []), "--hits", 1000,
           "run", "--topics", topics_file, "--output", out)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "hybrid-study")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    ndcg = lambda qrels, run: evaluate(qrels, run, ["ndcg_cut.10"])["ndcg_cut_10"]   # noqa: E731
    prepared = {name: prepare(name, args.data, args.work) for name in COLLECTIONS}
    # 1. the choice, on Cranfield's tune half only
    tune = prepared["cranfield"]
    grid = {}
    for normalization in (False, True):
        for alpha in ALPHAS:
            run = hybrid(tune, "tune", alpha, normalization, args.work / "cranfield" / f"hybrid-tune-{alpha}-{int(normalization)}.trec")
            grid[f"alpha={alpha} normalization={normalization}"] = ndcg(tune["files"]["tune"][1], run)
    best = max(grid, key=grid.get)
    best_normalized = max((key for key in grid if key.endswith("True")), key=grid.get)   # scale-free, for other models
    settings = {"hybrid (chosen)": best, "hybrid (chosen with normalization)": best_normalized,
                "hybrid (alpha 0.1, Pyserini's default)": "alpha=0.1 normalization=False"}
    settings = {label: (float(key.split()[0].split("=")[1]), key.endswith("True")) for label, key in settings.items()}
    print(f"chosen on Cranfield (odd queries): {best} (nDCG@10 {grid[best]:.4f}); with normalization: "
          f"{best_normalized} ({grid[best_normalized]:.4f})")
    # 2. held-out checks of that choice: BM25, Hypencoder, hybrid
    results = {}
    for name in COLLECTIONS:
        p = prepared[name]
        qrels = p["files"]["test"][1]
        bm25, exact = p["runs"]["test"]
        results[name] = {"bm25": ndcg(qrels, bm25), "hypencoder": ndcg(qrels, exact)}
        for label, (a, n) in settings.items():
            results[name][label] = ndcg(qrels, hybrid(p, "test", a, n, args.work / name / f"hybrid-test-{a}-{int(n)}.trec"))
    dl19 = args.data / "trec-dl-2019-passage-rerank"
    out = args.work / "dl19"
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for label, (a, n) in settings.items():
        run = out / f"hybrid-rerank-{a}-{int(n)}.trec"
        if not run.exists():
            sh("pyserini_hypencoder.search.hybrid", "dense", "--rerank", "--corpus", dl19 / "corpus.jsonl", "--encoder",
               "default", "--bf16", "--quiet", "sparse", "--run", dl19 / "runs" / "bm25.trec", "fusion", "--alpha", a,
               *(["--normalization"] if n else []), "--hits", 100, "run", "--topics", dl19 / "topics.test.tsv",
               "--output", run)
        rows[label] = ndcg(dl19 / "qrels.test.txt", run)
    rerank = out / "rerank.trec"
    if not rerank.exists():
        sh("pyserini_hypencoder.search", "--rerank", dl19 / "runs" / "bm25.trec", "--corpus", dl19 / "corpus.jsonl",
           "--encoder", "default", "--bf16", "--quiet", "--topics", dl19 / "topics.test.tsv", "--output", rerank)
    results["dl19 (BM25 top 100)"] = {"bm25": ndcg(dl19 / "qrels.test.txt", dl19 / "runs" / "bm25.trec"),
                                      "hypencoder": ndcg(dl19 / "qrels.test.txt", rerank), **rows}
    print("\nnDCG@10 (held out)")
    for name, row in results.items():
        print(f"{name:22s} " + "  ".join(f"{k} {v:.4f}" for k, v in row.items()))
    print("\ntuning grid (Cranfield odd queries):")
    for key, value in grid.items():
        print(f"  {key:32s} {value:.4f}")
    if args.json:
        args.json.write_text(json.dumps({"chosen": best, "chosen_normalized": best_normalized, "grid": grid,
                                         "results": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
