"""The main job, end to end, through the command lines: ``python -m pyserini_hypencoder.reproduce scifact|dl19``.

scifact: BM25 (Pyserini Lucene, BEIR "flat": title + text in one field) index and run; the corpus encoded with the
Hypencoder (``pyserini_hypencoder.encode``); exact q-net search of the test topics and a rerank of BM25's top 100
(``pyserini_hypencoder.search``); trec_eval nDCG@10 and R@100 of all three runs.  The data comes from
``../shared/data/scifact``, else BEIR's public zip (downloaded into the cache).  Indexes and the BM25 run are reused.

dl19: rerank ``runs/bm25.trec`` of ``../shared/data/trec-dl-2019-passage-rerank`` (top 100; the candidates are
encoded from ``corpus.jsonl``) and report trec_eval nDCG@10 beside BM25's.

Every command is logged before it runs, so the output doubles as a recipe.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from ._fsutil import atomic_directory, atomic_file, atomic_path, cache_path, write_json
from .cli import ArgumentParser, add_common_args, positive_int, run_cli, setup_logging
from .formats.corpus import JsonlCorpus, write_json_collection
from .formats.qrels import read_qrels, write_qrels
from .formats.topics import read_topics, write_topics

logger = logging.getLogger(__name__)

PROG = "python -m pyserini_hypencoder.reproduce"
REPO = Path(__file__).resolve().parents[1]
BEIR_SCIFACT_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip"
SHARED_NAMES = {"scifact": "scifact", "dl19": "trec-dl-2019-passage-rerank"}
METRICS = {"ndcg_cut_10": "nDCG@10", "recall_100": "R@100"}
BM25_HITS = 1000  # the first-stage depth of Pyserini's BEIR runs, whatever --hits asks of the Hypencoder
# The recommended fusion for the default model (chosen on Cranfield's odd queries: docs/hybrid.md).
HYBRID_FUSION = ["--alpha", "0.5"]


# -- data ------------------------------------------------------------------------------------------------------------
def shared_candidates(name: str) -> List[Path]:
    """Where a ../shared dataset folder may be: $PYSERINI_HYPENCODER_SHARED, beside the repo, beside the cwd."""
    folder = SHARED_NAMES[name]
    roots = []
    if os.environ.get("PYSERINI_HYPENCODER_SHARED"):
        roots.append(Path(os.environ["PYSERINI_HYPENCODER_SHARED"]))
    roots += [REPO.parent / "shared", Path.cwd().parent / "shared", Path.cwd() / "shared"]
    return [root / "data" / folder for root in roots]


def find_shared(name: str) -> Optional[Path]:
    for path in shared_candidates(name):
        if (path / "corpus.jsonl").is_file():
            return path.resolve()
    return None


def download_scifact(cache: Optional[Path] = None) -> Path:
    """BEIR SciFact in ``cache/scifact`` (downloaded once; ``cache``: the plugin's cache root), with
    ``topics.test.tsv`` and ``qrels.test.txt`` added."""
    cache = Path(cache) if cache is not None else cache_path()
    target = cache / "scifact"
    if not (target / "corpus.jsonl").is_file():
        import urllib.error
        import urllib.request
        archive = cache / "scifact.zip"
        logger.info("downloading BEIR SciFact from %s", BEIR_SCIFACT_URL)
        try:
            with urllib.request.urlopen(BEIR_SCIFACT_URL, timeout=60) as response, atomic_file(archive, "wb") as f:
                shutil.copyfileobj(response, f, 1 << 20)
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ValueError(f"no SciFact data: ../shared/data/scifact is absent and {BEIR_SCIFACT_URL} cannot be "
                             f"downloaded ({reason}); connect to the network or set PYSERINI_HYPENCODER_SHARED") \
                from None
        with atomic_directory(target) as unpacked, zipfile.ZipFile(archive) as z:
            z.extractall(unpacked)  # BEIR's zip holds scifact/{corpus.jsonl,queries.jsonl,qrels/*.tsv}
            inner = unpacked / "scifact"
            if inner.is_dir():
                for entry in inner.iterdir():
                    os.replace(entry, unpacked / entry.name)
                inner.rmdir()
    add_trec_files(target, "test")
    return target


def add_trec_files(folder: Path, split: str) -> None:
    """``topics.<split>.tsv`` and ``qrels.<split>.txt`` from BEIR's ``queries.jsonl`` and ``qrels/<split>.tsv``."""
    topics, qrels = folder / f"topics.{split}.tsv", folder / f"qrels.{split}.txt"
    if topics.is_file() and qrels.is_file():
        return
    judged = read_qrels(folder / "qrels" / f"{split}.tsv")
    texts = read_topics(folder / "queries.jsonl")
    write_topics(topics, {qid: texts[qid] for qid in judged})
    write_qrels(qrels, judged)


def scifact_data(data: Optional[str]) -> Path:
    if data:
        path = Path(data)
        if not (path / "corpus.jsonl").is_file():
            raise FileNotFoundError(f"{path}: no corpus.jsonl (expected a BEIR-layout SciFact folder)")
        if os.access(path, os.W_OK):
            add_trec_files(path, "test")
        return path.resolve()
    return find_shared("scifact") or download_scifact()


# -- running ---------------------------------------------------------------------------------------------------------
@dataclass
class Step:
    name: str
    command: List[str]
    seconds: float = 0.0
    reused: bool = False
    log: str = ""


@dataclass
class Report:
    title: str
    rows: Dict[str, Dict[str, float]] = field(default_factory=dict)
    steps: List[Step] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    runs: Dict[str, str] = field(default_factory=dict)
    ms_per_query: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"title": self.title, "metrics": self.rows, "runs": self.runs, "ms_per_query": self.ms_per_query,
                "steps": [{"name": s.name, "command": show(s.command), "seconds": round(s.seconds, 2),
                           "reused": s.reused} for s in self.steps]}


def _short(arg: str) -> str:
    """An absolute path as seen from the working directory (``../shared/...``) when that is shorter."""
    if arg == sys.executable:
        return "python"
    if os.path.isabs(arg):
        try:
            rel = os.path.relpath(arg)
        except ValueError:
            return arg
        return rel if len(rel) < len(arg) and not rel.startswith("../../..") else arg
    return arg


def show(command: Sequence[str]) -> str:
    """The command as a user would type it."""
    return " ".join(shlex.quote(_short(str(c))) for c in command)


def run(name: str, command: List[str], report: Report, *, outputs: Sequence[Path] = (), reuse: bool = False) -> Step:
    """Run ``command`` (stderr passed through and kept), unless ``reuse`` and every output exists."""
    step = Step(name, [str(c) for c in command])
    report.steps.append(step)
    if reuse and outputs and all(Path(p).exists() for p in outputs):
        step.reused = True
        logger.info("%s: reusing %s", name, ", ".join(map(str, outputs)))
        return step
    logger.info("%s: %s", name, show(step.command))
    started = time.perf_counter()
    proc = subprocess.Popen(step.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kept = []
    for raw in iter(lambda: proc.stderr.read1(4096), b""):
        sys.stderr.buffer.write(raw)
        sys.stderr.flush()
        kept.append(raw)
    stdout = proc.stdout.read().decode("utf-8", "replace")
    proc.wait()
    step.seconds = time.perf_counter() - started
    step.log = b"".join(kept).decode("utf-8", "replace") + stdout
    if proc.returncode != 0:
        last = [line for line in step.log.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {last[0].strip()}")
    return step


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def provenance_file(target: Path) -> Path:
    return target.with_name(f"{target.name}.provenance.json")


def check_reuse(name: str, target: Path, provenance: dict) -> None:
    """A ValueError unless ``target`` was built from the same inputs (its provenance file says so)."""
    path = provenance_file(target)
    recorded = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if recorded != provenance:
        changed = "no record of its inputs" if recorded is None else "built from " + ", ".join(
            f"{k} {recorded.get(k)!r}" for k in provenance if recorded.get(k) != provenance[k])
        raise ValueError(f"{name}: will not reuse {target} ({changed}; now {provenance}); pass --no-reuse to "
                         f"rebuild it, or another --indexes-dir/--runs-dir")


def run_into(name: str, target: Path, command_for, report: Report, *, reuse: bool = False,
             provenance: dict) -> Step:
    """Run ``command_for(tmp)`` writing to a temporary name beside ``target``, then rename it to ``target`` and
    record ``provenance`` (what it was built from) beside it; reuse only a ``target`` of the same provenance."""
    target = Path(target)
    if reuse and target.exists():
        check_reuse(name, target, provenance)
        return run(name, command_for(target), report, outputs=[target], reuse=True)
    with atomic_path(target) as tmp:
        step = run(name, command_for(tmp), report)
    write_json(provenance_file(target), provenance)
    step.command = command_for(target)  # what a user would type
    return step


def check_index_reuse(dense: Path, corpus: Path, fingerprint: str, bf16: bool, num_docs: int) -> None:
    """A ValueError unless the Hypencoder index ``dense`` holds ``corpus`` encoded by these weights."""
    meta = json.loads((dense / "meta.json").read_text(encoding="utf-8"))
    recorded = meta.get("corpus") or {}
    source = next((Path(p) for p in (recorded.get("resolved"), recorded.get("path")) if p and Path(p).exists()), None)
    problems = [what for what, bad in (
        ("another corpus", source is None or source.resolve() != corpus.resolve()),
        ("other encoder weights", meta.get("encoder_fingerprint") != fingerprint),
        ("another precision", bool(meta.get("bf16")) != bf16), (f"{meta.get('num_docs')} documents, not {num_docs}",
                                                                meta.get("num_docs") != num_docs)) if bad]
    if problems:
        raise ValueError(f"Hypencoder index: will not reuse {dense} (it holds {', '.join(problems)}); pass --no-reuse "
                         f"to rebuild it, or another --indexes-dir")


def python_m(module: str, *args) -> List[str]:
    return [sys.executable, "-m", module, *map(str, args)]


def evaluate(qrels: Path, run_file: Path, metrics: Sequence[str]) -> Dict[str, float]:
    """trec_eval (Pyserini's) ``-c`` with the given ``-m`` metrics -> ``{name: value}``."""
    command = python_m("pyserini.eval.trec_eval", "-c", *[a for m in metrics for a in ("-m", m)], qrels, run_file)
    logger.info("evaluate: %s", show(command))
    proc = subprocess.run(command, capture_output=True, text=True)
    values = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(\S+)\s+all\s+([0-9.]+)\s*$", line)
        if match:
            values[match.group(1)] = float(match.group(2))
    if proc.returncode != 0 or not values:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"trec_eval failed on {run_file}: {tail}")
    return values


def search_timing(step: Step) -> Optional[float]:
    """ms/query from the search CLI's closing log line."""
    match = re.search(r"queries in [0-9.]+ s \(([0-9.]+) ms/query", step.log)
    return float(match.group(1)) if match else None


def encoder_tag(encoder: str) -> Tuple[str, str]:
    """(short name for file names, the encoder's weight fingerprint)."""
    from .encoders import model_fingerprint
    from .model import load_hypencoder
    name = Path(encoder).name if os.sep in encoder else encoder
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model"
    fingerprint = model_fingerprint(load_hypencoder(encoder))
    return f"{name}-{fingerprint[:8]}", fingerprint


def precision(args) -> str:
    return "bf16" if args.bf16 else "fp32"


def encoder_flags(args) -> List[str]:
    flags = ["--encoder", args.encoder, "--batch-size", str(args.batch_size)]
    if args.bf16:
        flags.append("--bf16")
    if args.threads:
        flags += ["--threads", str(args.threads)]
    return flags + (["--quiet"] if args.quiet else [])


# -- the jobs --------------------------------------------------------------------------------------------------------
def reproduce_scifact(args) -> Report:
    data = scifact_data(args.data)
    topics, qrels = data / "topics.test.tsv", data / "qrels.test.txt"
    indexes, runs = Path(args.indexes_dir), Path(args.runs_dir)
    tag, fingerprint = encoder_tag(args.encoder)
    report = Report(f"{'SciFact' if data.name == 'scifact' else data.name} test ({count_lines(topics)} queries, {count_lines(data / 'corpus.jsonl')} documents; "
                    f"data: {_short(str(data))}; encoder: {args.encoder} [{tag}], {precision(args)})")

    collection = indexes / "collections" / "scifact-flat"
    lucene = indexes / "lucene.scifact-flat"
    dense = indexes / f"scifact.hypencoder.{tag}.{precision(args)}"
    bm25_run = runs / "run.scifact.bm25-flat.trec"
    exact_run = runs / f"run.scifact.hypencoder.{tag}.exact.trec"
    rerank_run = runs / f"run.scifact.bm25-flat.hypencoder.{tag}.rerank{args.rerank_depth}.trec"

    corpus = data / "corpus.jsonl"
    built_from = {"corpus": file_digest(corpus)}   # what a reused index or run must come from
    if not (lucene.exists() and args.reuse):   # BEIR "flat": title and text in one contents field
        write_json_collection(JsonlCorpus(corpus), collection / "docs.jsonl")
    run_into("BM25 index", lucene, lambda out: python_m(
        "pyserini.index.lucene", "--collection", "JsonCollection", "--input", collection, "--index", out,
        "--generator", "DefaultLuceneDocumentGenerator", "--threads", args.threads or 2, "--storeRaw"),
        report, reuse=args.reuse, provenance=built_from)
    run_into("BM25 run", bm25_run, lambda out: python_m(
        "pyserini.search.lucene", "--index", lucene, "--topics", topics, "--output", out, "--bm25",
        "--hits", BM25_HITS, "--threads", args.threads or 2, "--batch-size", 64),
        report, reuse=args.reuse, provenance={**built_from, "topics": file_digest(topics), "hits": BM25_HITS})
    if args.reuse and (dense / "meta.json").exists():
        check_index_reuse(dense, corpus, fingerprint, args.bf16, count_lines(corpus))
    run("Hypencoder index", python_m("pyserini_hypencoder.encode", "input", "--corpus", corpus,
                                     "--fields", "title", "text", "output", "--embeddings", dense, "--overwrite",
                                     "encoder", *encoder_flags(args)),
        report, outputs=[dense / "meta.json"], reuse=args.reuse)
    search_flags = ["--topics", topics, "--index", dense, *encoder_flags(args)]
    exact = run("Hypencoder exact search", python_m("pyserini_hypencoder.search", *search_flags,
                                                    "--hits", args.hits, "--output", exact_run), report)
    rerank = run("BM25 + Hypencoder rerank", python_m("pyserini_hypencoder.search", *search_flags, "--rerank",
                                                      bm25_run, "--rerank-depth", args.rerank_depth,
                                                      "--output", rerank_run), report)
    hybrid_run = runs / f"run.scifact.bm25-flat.hypencoder.{tag}.hybrid.trec"
    run("BM25 + Hypencoder hybrid", python_m("pyserini_hypencoder.search.hybrid", "dense", "--index", dense,
                                             *encoder_flags(args), "sparse", "--run", bm25_run, "fusion",
                                             *HYBRID_FUSION, "--hits", BM25_HITS, "run", "--topics", topics,
                                             "--hits", args.hits, "--output", hybrid_run), report)
    metrics = ["ndcg_cut.10", "recall.100"]
    report.rows["BM25 flat (Pyserini Lucene)"] = evaluate(qrels, bm25_run, metrics)
    report.rows[f"BM25 top {args.rerank_depth} reranked by Hypencoder"] = evaluate(qrels, rerank_run, metrics)
    report.rows["Hypencoder exact search"] = evaluate(qrels, exact_run, metrics)
    report.rows["Hybrid: BM25 + Hypencoder"] = evaluate(qrels, hybrid_run, metrics)
    report.runs = {"bm25": str(bm25_run), "rerank": str(rerank_run), "exact": str(exact_run),
                   "hybrid": str(hybrid_run)}
    for key, step in (("exact", exact), ("rerank", rerank)):
        ms = search_timing(step)
        if ms is not None:
            report.ms_per_query[key] = ms
            report.notes.append(f"{step.name}: {ms:.1f} ms/query (query encoding included, model loading not)")
    return report


def reproduce_dl19(args) -> Report:
    data = Path(args.data) if args.data else find_shared("dl19")
    if data is None or not (data / "corpus.jsonl").is_file():
        where = args.data or ", ".join(map(str, shared_candidates("dl19")))
        raise FileNotFoundError(f"no TREC DL 2019 reranking set at {where} (it is built in ../shared/data only)")
    tag, _ = encoder_tag(args.encoder)
    queries = count_lines(data / "topics.test.tsv")
    report = Report(f"TREC DL 2019 passage, reranking BM25 top {args.rerank_depth} ({queries} queries; candidates "
                    f"encoded from {_short(str(data / 'corpus.jsonl'))}; encoder: {args.encoder} [{tag}], "
                    f"{precision(args)})")
    bm25_run, qrels = data / "runs" / "bm25.trec", data / "qrels.test.txt"
    rerank_run = Path(args.runs_dir) / f"run.dl19-passage.bm25.hypencoder.{tag}.rerank{args.rerank_depth}.trec"
    rerank = run("BM25 + Hypencoder rerank", python_m(
        "pyserini_hypencoder.search", "--topics", data / "topics.test.tsv", "--rerank", bm25_run,
        "--rerank-depth", args.rerank_depth, "--corpus", data / "corpus.jsonl", *encoder_flags(args),
        "--output", rerank_run), report)
    hybrid_run = rerank_run.with_name(rerank_run.name.replace(".trec", ".hybrid.trec"))
    run("BM25 + Hypencoder hybrid rerank", python_m(
        "pyserini_hypencoder.search.hybrid", "dense", "--rerank", "--corpus", data / "corpus.jsonl",
        *encoder_flags(args), "sparse", "--run", bm25_run, "fusion", *HYBRID_FUSION, "--hits", args.rerank_depth,
        "run", "--topics", data / "topics.test.tsv", "--output", hybrid_run), report)
    report.rows["BM25 (published run)"] = evaluate(qrels, bm25_run, ["ndcg_cut.10"])
    report.rows[f"BM25 top {args.rerank_depth} reranked by Hypencoder"] = evaluate(qrels, rerank_run, ["ndcg_cut.10"])
    report.rows[f"Hybrid: BM25 top {args.rerank_depth} + their Hypencoder scores"] = evaluate(qrels, hybrid_run,
                                                                                             ["ndcg_cut.10"])
    report.runs = {"bm25": str(bm25_run), "rerank": str(rerank_run), "hybrid": str(hybrid_run)}
    ms = search_timing(rerank)
    if ms is not None:
        report.ms_per_query["rerank"] = ms
        report.notes.append(f"rerank: {ms:.1f} ms/query (candidate encoding and query encoding included)")
    return report


def count_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())


def print_report(report: Report, file=sys.stdout) -> None:
    names = [m for m in METRICS if any(m in row for row in report.rows.values())]
    width = max(len(name) for name in report.rows) + 2
    print(f"\n{report.title}", file=file)
    print(f"{'run':<{width}}" + "".join(f"{METRICS[m]:>10}" for m in names), file=file)
    for name, row in report.rows.items():
        print(f"{name:<{width}}" + "".join(f"{row[m]:>10.4f}" if m in row else f"{'-':>10}" for m in names),
              file=file)
    for step in report.steps:
        state = "reused" if step.reused else f"{step.seconds:.1f} s"
        print(f"  {step.name}: {state}", file=file)
    for note in report.notes:
        print(f"  {note}", file=file)


# -- CLI -------------------------------------------------------------------------------------------------------------
def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Run the main job end to end and print trec_eval's numbers.")
    parser.add_argument("dataset", choices=("scifact", "dl19"))
    parser.add_argument("--data", metavar="DIR", help="dataset folder (default: ../shared/data/..., else download)")
    parser.add_argument("--encoder", default="default", metavar="PATH_OR_ID", help="Hypencoder model (default)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="bf16 matrix products (the default; --no-bf16 for fp32)")
    parser.add_argument("--fp32", dest="bf16", action="store_false", help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=positive_int, default=32, metavar="N")
    parser.add_argument("--hits", type=positive_int, default=1000, metavar="K")
    parser.add_argument("--rerank-depth", type=positive_int, default=100, metavar="N")
    parser.add_argument("--indexes-dir", default="indexes", metavar="DIR")
    parser.add_argument("--runs-dir", default="runs", metavar="DIR")
    parser.add_argument("--summary", metavar="FILE", help="also write the numbers, runs and timings as JSON")
    parser.add_argument("--no-reuse", dest="reuse", action="store_false",
                        help="rebuild indexes and the BM25 run even when present")
    add_common_args(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    job = reproduce_scifact if args.dataset == "scifact" else reproduce_dl19
    try:
        report = job(args)
    except RuntimeError as exc:
        raise ValueError(str(exc)) from None
    print_report(report)
    if all(not row.get("ndcg_cut_10") for row in report.rows.values()):
        raise ValueError("every run scores 0 nDCG@10 against the qrels: they do not judge these runs' documents "
                         "(the data, the runs and the qrels must belong together)")
    if args.summary:
        with atomic_file(args.summary) as f:
            json.dump(report.to_json(), f, indent=2)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, prog=PROG))
