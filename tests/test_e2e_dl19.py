"""TREC DL 2019 passage reranking on real data: BM25's top 100 reranked by the default model through the CLI.

``python -m pyserini_hypencoder.reproduce dl19`` runs ``python -m pyserini_hypencoder.search --rerank
runs/bm25.trec --rerank-depth 100 --corpus corpus.jsonl`` (no dense index: only the 4,300 candidates are encoded,
bf16) and the run is scored with ``python -m pyserini.eval.trec_eval -c -m ndcg_cut.10``.

Thresholds: about 0.01 below the nDCG@10 measured with the default model (weight fingerprint 6800ed77, bf16):
rerank 0.6444, hybrid rerank 0.6578, against BM25's 0.5058 (docs/reproduce-scifact-dl19.md).  A new default
model needs them re-measured.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_hypencoder.reproduce import evaluate
from pyserini_hypencoder.formats import read_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.java]

ENCODER = "default"
BM25_NDCG10 = 0.5058  # the published run (Anserini regression)
RERANK_MIN_NDCG10 = 0.634  # measured 0.6444
HYBRID_MIN_NDCG10 = 0.646  # measured 0.6578


@pytest.fixture(scope="module")
def rerank_run(tmp_path_factory, dl19_dir):
    work = tmp_path_factory.mktemp("dl19-job")
    summary = work / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "pyserini_hypencoder.reproduce", "dl19", "--data", str(dl19_dir),
                           "--encoder", ENCODER, "--runs-dir", str(work / "runs"), "--threads", "2",
                           "--summary", str(summary)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reranked by Hypencoder" in proc.stdout
    report = json.loads(summary.read_text())
    return Path(report["runs"]["rerank"]), report["metrics"]


def test_rerank_keeps_each_querys_candidates(rerank_run, dl19_dir):
    bm25, reranked = read_run(dl19_dir / "runs" / "bm25.trec"), read_run(rerank_run[0])
    assert set(reranked) == set(bm25) and len(reranked) == 43
    for qid, entries in reranked.items():
        assert [e.rank for e in entries] == list(range(1, 101))
        assert {e.docid for e in entries} == {e.docid for e in bm25[qid]}
        scores = [e.score for e in entries]
        assert scores == sorted(scores, reverse=True)


def test_rerank_ndcg(rerank_run, dl19_dir):
    path, metrics = rerank_run
    bm25 = next(v for name, v in metrics.items() if name.startswith("BM25 (published"))
    reranked = next(v for name, v in metrics.items() if "reranked by Hypencoder" in name)
    hybrid = next(v for name, v in metrics.items() if name.startswith("Hybrid"))
    assert bm25["ndcg_cut_10"] == pytest.approx(BM25_NDCG10, abs=1e-4)
    assert reranked["ndcg_cut_10"] >= RERANK_MIN_NDCG10, reranked
    assert hybrid["ndcg_cut_10"] >= HYBRID_MIN_NDCG10, hybrid
    # The summary holds trec_eval's numbers: an independent evaluation of the run agrees.
    assert evaluate(dl19_dir / "qrels.test.txt", path, ["ndcg_cut.10"]) == reranked
