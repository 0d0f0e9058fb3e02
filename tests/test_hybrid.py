"""Hybrid search: Pyserini's HybridSearcher arithmetic over a Hypencoder and BM25 (or a first-stage run)."""
import numpy as np
import pytest
from pyserini.search.faiss import DenseSearchResult
from pyserini.search.hybrid import HybridSearcher

from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.formats import rank_hits, read_run
from pyserini_hypencoder.search.hybrid import HypencoderHybridSearcher, fuse
from pyserini_hypencoder.search.hybrid._main import PROG, main
from test_search_cli import world  # noqa: F401  (the search CLI's small corpus, index and first-stage run)


def _lists(seed):
    rng = np.random.default_rng(seed)
    docs = [f"d{i}" for i in range(30)]
    dense = [(d, float(s)) for d, s in zip(rng.choice(docs, 12, replace=False), rng.normal(5, 2, 12))]
    sparse = [(d, float(s)) for d, s in zip(rng.choice(docs, 15, replace=False), rng.gamma(3, 4, 15))]
    return dense, sparse


@pytest.mark.parametrize("normalization", [False, True])
@pytest.mark.parametrize("weight_on_dense", [False, True])
@pytest.mark.parametrize("alpha", [0.1, 1.0, 2.5])
def test_fusion_is_pyserinis_arithmetic(normalization, weight_on_dense, alpha):
    for seed in range(5):
        dense, sparse = _lists(seed)
        theirs = HybridSearcher._hybrid_results([DenseSearchResult(d, s) for d, s in dense],
                                                [DenseSearchResult(d, s) for d, s in sparse], alpha, 40,
                                                normalization, weight_on_dense)
        ours = fuse(dense, sparse, alpha=alpha, k=40, normalization=normalization, weight_on_dense=weight_on_dense)
        # the same floating-point operations; Pyserini leaves ties in set order, ours are by docid
        assert ours == rank_hits((h.docid, h.score) for h in theirs) and len(ours) == len(theirs)


def test_ties_are_ordered_by_docid_and_a_flat_list_does_not_divide_by_zero():
    assert fuse([("b", 1.0), ("a", 1.0)], [], k=5) == [("a", 1.0), ("b", 1.0)]
    assert fuse([("a", 2.0)], [("b", 3.0), ("c", 3.0)], normalization=True, k=5)[0][0] == "a"


def test_the_searcher_fuses_its_two_searchers_hits():
    class Fixed:
        def __init__(self, hits):
            self.hits = hits

        def batch_search(self, queries, q_ids, k, threads=1):
            return {q: [DenseSearchResult(d, s) for d, s in self.hits[:k]] for q in q_ids}

    dense, sparse = _lists(7)
    searcher = HypencoderHybridSearcher(Fixed(dense), Fixed(sparse))
    hits = searcher.search("a query", k0=10, k=5, alpha=0.5, normalization=True)
    assert [(h.docid, h.score) for h in hits] == fuse(dense[:10], sparse[:10], alpha=0.5, k=5, normalization=True)


def test_cli_fuses_a_rerank_with_its_first_stage_run(world, tmp_path, capsys):  # noqa: F811
    """dense --rerank: the Hypencoder scores the run's candidates; the fusion is then over the same documents.
    The run holds the fusion of the reranker's own scores (compared as printed, 6 decimals)."""
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    from pyserini_hypencoder.formats import read_topics
    from pyserini_hypencoder.search import HypencoderReranker
    out = tmp_path / "hybrid.trec"
    argv = ["dense", "--index", str(world["full"]), "--encoder", world["encoder"], "--rerank", "--quiet",
            "sparse", "--run", str(world["run"]), "fusion", "--alpha", "0.3", "--hits", "10", "--normalization",
            "run", "--topics", str(world["topics"]), "--output", str(out), "--hits", "10"]
    assert run_cli(main, argv, PROG) == 0
    first, fused = read_run(world["run"]), read_run(out)
    dense = HypencoderReranker(HypencoderQueryEncoder(world["encoder"]), index=str(world["full"]),
                               progress=False).rerank(read_topics(world["topics"]), first, depth=10)
    for qid, entries in fused.items():
        expected = fuse(dense[qid], [(e.docid, e.score) for e in first[qid][:10]], alpha=0.3, k=10,
                        normalization=True)
        assert [(e.docid, e.score) for e in entries] == [(d, float(f"{s:.6f}")) for d, s in expected]
    assert {e.docid for e in fused["1"]} == {e.docid for e in first["1"][:10]}
    capsys.readouterr()
    for bad, message in ((argv[:argv.index("sparse") + 1] + argv[argv.index("fusion"):],
                          "sparse: give one of --index (a Lucene index) or --run (a first-stage run)"),
                         (["dense", "--encoder", world["encoder"]] + argv[argv.index("sparse"):],
                          "dense: --index is required (or --rerank to score the sparse side's candidates)")):
        assert run_cli(main, bad, PROG) == 2
        assert capsys.readouterr().err.strip().splitlines() == [f"{PROG}: error: {message}"]


@pytest.mark.java
def test_cli_fuses_exact_search_with_bm25(world, tmp_path):  # noqa: F811
    """dense search + sparse BM25 over a Lucene index (built with Pyserini's CLI)."""
    import json
    import subprocess
    import sys
    from pyserini_hypencoder.formats import join_title
    coll = tmp_path / "coll"
    coll.mkdir()
    (coll / "docs.jsonl").write_text("".join(json.dumps({"id": d["_id"], "contents": join_title(d["title"], d["text"])})
                                             + "\n" for d in world["docs"]), encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection", "--input", coll,
                    "--index", tmp_path / "lucene", "--generator", "DefaultLuceneDocumentGenerator", "--threads", "1"],
                   check=True, capture_output=True)
    out = tmp_path / "hybrid.trec"
    assert run_cli(main, ["dense", "--index", str(world["full"]), "--encoder", world["encoder"], "--quiet",
                          "sparse", "--index", str(tmp_path / "lucene"), "fusion", "--hits", "20",
                          "run", "--topics", str(world["topics"]), "--output", str(out), "--hits", "5"], PROG) == 0
    fused = read_run(out)
    assert set(fused) == {"1", "2", "D3", "4"} and all(len(v) == 5 for v in fused.values())
