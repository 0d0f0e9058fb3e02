"""``python -m pyserini_hypencoder.search``: search and rerank through the CLI (tiny parity checkpoint), and
every kind of bad input answered with one error line, exit status 2 and no output file."""
import gzip
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.encoders import HypencoderDocumentEncoder, HypencoderQueryEncoder
from pyserini_hypencoder.formats import join_title
from pyserini_hypencoder.index import write_index
from pyserini_hypencoder.formats import read_run
from pyserini_hypencoder.search import HypencoderSearcher
from pyserini_hypencoder.search._main import main

PROG = "python -m pyserini_hypencoder.search"
WORDS = "the a cell cells protein gene dna cancer risk blood brain virus study test patients".split()


def cli(argv):
    """Exit status of the CLI run in-process (argparse's SystemExit included)."""
    try:
        return run_cli(main, [str(a) for a in argv], prog=PROG)
    except SystemExit as exc:
        return exc.code


def error_lines(capsys):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if "error" in line.lower()]


@pytest.fixture(scope="module")
def world(tmp_path_factory, parity_dir):
    """A 40-document BEIR corpus, topics, a dense index of its first 30 documents and a BM25-like run."""
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(11)
    docs = [{"_id": f"D{i}", "title": f"title {WORDS[i % len(WORDS)]}",
             "text": " ".join(rng.choice(WORDS, size=12 + i % 7))} for i in range(40)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    topics = root / "topics.tsv"
    topics.write_text("1\tcancer risk in patients\n2\tprotein gene dna\nD3\tbrain virus study\n"
                      "4\tno candidates for me\n", encoding="utf-8")
    encoder_dir = parity_dir / "checkpoint_bin"
    enc = HypencoderDocumentEncoder(str(encoder_dir))
    vectors = enc.encode([join_title(d["title"], d["text"]) for d in docs])
    meta = {"encoder": str(encoder_dir), "encoder_fingerprint": enc.fingerprint, "pooling": "cls",
            "max_length": enc.max_length, "bf16": False}
    full = write_index(root / "full", [d["_id"] for d in docs], vectors, meta)
    partial = write_index(root / "partial", [d["_id"] for d in docs[:30]], vectors[:30], meta)
    run = root / "first-stage.trec"
    order = {q: rng.permutation(40) for q in ("1", "2", "D3")}
    run.write_text("".join(f"{q} Q0 D{j} {r + 1} {100 - r:.3f} bm25\n" for q, perm in order.items()
                           for r, j in enumerate(perm[:20])), encoding="utf-8")
    return dict(root=root, docs=docs, corpus=corpus, topics=topics, encoder=str(encoder_dir), full=full,
                partial=partial, run=run, vectors=vectors)


def exact_scores(world, qid_text):
    searcher = HypencoderSearcher(world["full"], HypencoderQueryEncoder(world["encoder"]))
    return {h.docid: h.score for h in searcher.search(qid_text, k=100)}


def test_search_writes_pyserini_trec_lines(world, tmp_path):
    out = tmp_path / "run.trec"
    assert cli(["--topics", world["topics"], "--index", world["full"], "--encoder", world["encoder"],
                "--output", out, "--hits", 7, "--batch-size", 2]) == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 4 * 7
    for line in lines:
        qid, q0, docid, rank, score, tag = line.split(" ")
        assert q0 == "Q0" and tag == "Hypencoder" and 1 <= int(rank) <= 7 and len(score.split(".")[1]) == 6
    run = read_run(out)
    expected = exact_scores(world, "cancer risk in patients")
    top = sorted(expected.items(), key=lambda h: (-h[1], h[0]))[:7]
    assert [e.docid for e in run["1"]] == [d for d, _ in top]
    np.testing.assert_allclose([e.score for e in run["1"]], [s for _, s in top], atol=5e-6)  # batch padding, %.6f


def test_msmarco_format_remove_query_and_runtag(world, tmp_path):
    out = tmp_path / "run.tsv"
    assert cli(["--topics", world["topics"], "--index", world["full"], "--encoder", world["encoder"],
                "--output", out, "--hits", 40, "--output-format", "msmarco", "--remove-query"]) == 0
    rows = [line.split("\t") for line in out.read_text().splitlines()]
    assert all(len(r) == 3 for r in rows)
    assert [r[1] for r in rows if r[0] == "D3"].count("D3") == 0
    assert sum(r[0] == "D3" for r in rows) == 39 and sum(r[0] == "1" for r in rows) == 40
    out2 = tmp_path / "tagged.trec"
    assert cli(["--topics", world["topics"], "--index", world["full"], "--encoder", world["encoder"],
                "--output", out2, "--hits", 1, "--runtag", "mytag"]) == 0
    assert all(line.endswith(" mytag") for line in out2.read_text().splitlines())


def test_rerank_reorders_only_candidates_within_depth(world, tmp_path):
    out = tmp_path / "rr.trec"
    assert cli(["--topics", world["topics"], "--index", world["full"], "--encoder", world["encoder"],
                "--rerank", world["run"], "--rerank-depth", 5, "--output", out]) == 0
    first, reranked = read_run(world["run"]), read_run(out)
    assert set(reranked) == {"1", "2", "D3"}  # topic 4 has no candidates: skipped
    for qid, entries in reranked.items():
        assert {e.docid for e in entries} == {e.docid for e in first[qid][:5]}  # beyond the depth: dropped
        scores = [e.score for e in entries]
        assert scores == sorted(scores, reverse=True)
    expected = exact_scores(world, "protein gene dna")
    for e in reranked["2"]:
        assert e.score == pytest.approx(expected[e.docid], abs=2e-5)


@pytest.mark.parametrize("source", ["corpus", pytest.param("lucene", marks=pytest.mark.java)])
def test_rerank_encodes_missing_candidates_from_text(world, tmp_path, source):
    """Candidates missing from the (partial) index are encoded from their text: same scores as the full index."""
    if source == "corpus":
        extra = ["--corpus", world["corpus"]]
    else:
        coll = tmp_path / "coll"
        coll.mkdir()
        (coll / "docs.jsonl").write_text("".join(
            json.dumps({"id": d["_id"], "contents": join_title(d["title"], d["text"])}) + "\n"
            for d in world["docs"]), encoding="utf-8")
        subprocess.run([sys.executable, "-m", "pyserini.index.lucene", "--collection", "JsonCollection",
                        "--input", coll, "--index", tmp_path / "lucene", "--generator",
                        "DefaultLuceneDocumentGenerator", "--threads", "1", "--storeRaw"],
                       check=True, capture_output=True)
        extra = ["--lucene-index", tmp_path / "lucene"]
    full, mixed = tmp_path / "full.trec", tmp_path / "mixed.trec"
    common = ["--topics", world["topics"], "--encoder", world["encoder"], "--rerank", world["run"]]
    assert cli(common + ["--index", world["full"], "--output", full]) == 0
    assert cli(common + ["--index", world["partial"], *extra, "--output", mixed]) == 0
    a, b = read_run(full), read_run(mixed)
    assert a.keys() == b.keys()
    for qid in a:
        sa = {e.docid: e.score for e in a[qid]}
        sb = {e.docid: e.score for e in b[qid]}
        assert sa.keys() == sb.keys() and any(not d[1:].isdigit() or int(d[1:]) >= 30 for d in sa)
        for docid in sa:
            assert sb[docid] == pytest.approx(sa[docid], abs=1e-4)
    from pyserini_hypencoder.search import HypencoderSearcher   # the same text sources serve doc(docid)
    source_kw = {"corpus": world["corpus"]} if source == "corpus" else {"lucene_index": tmp_path / "lucene"}
    doc = HypencoderSearcher(world["full"], world["encoder"], **source_kw).doc("D7")
    record = world["docs"][7]
    assert doc.docid() == "D7" and doc.contents() == join_title(record["title"], record["text"])
    assert json.loads(doc.raw())["contents" if source == "lucene" else "text"] in (record["text"], doc.contents())


def test_rerank_msmarco_run_without_index(world, tmp_path):
    run = tmp_path / "run.tsv"
    run.write_text("1\tD5\t1\n1\tD6\t2\n1\tD35\t3\n", encoding="utf-8")
    out = tmp_path / "rr.trec"
    assert cli(["--topics", world["topics"], "--encoder", world["encoder"], "--rerank", run,
                "--corpus", world["corpus"], "--output", out]) == 0
    assert {e.docid for e in read_run(out)["1"]} == {"D5", "D6", "D35"}


@pytest.mark.parametrize("case,message", [
    ("hits0", "argument --hits: expected a positive integer, got 0"),
    ("hits-neg", "argument --hits: expected a positive integer, got -5"),
    ("missing-topics", "absent.tsv: topics file not found"),
    ("malformed-topics", "topics.tsv:1: expected 'qid<TAB>query text', got '1 no tab'"),
    ("empty-query", "topics.tsv:2: empty query text for query 2"),
    ("run-columns", "run.trec:1: expected 6 columns (TREC) or 3/4 columns (MS MARCO), got 5"),
    ("unknown-docids", "1 candidate documents are not in the index and there is no text source"),
    ("docid-not-in-corpus", "1 candidate documents are unknown to the index and to the text source"),
    ("index-missing-files", "index directory lacks the index file"),
    ("no-index", "--index is required"),
    ("fingerprint", "the index was built with encoder 'someone-else'"),
    ("dimension", "the index holds 8-d vectors"),
    ("output-dir", "output is a directory"),
    ("truncated-gzip-topics", "topics.tsv.gz: damaged gzip file"),
    ("device-gpu", "argument --device: not a torch device: 'gpu'"),
    ("block-size-with-rerank", "--strategy and its parameters apply to full search, not to --rerank"),
    ("internal-search-param", "unknown surrogate search parameter 'vectors'"),
    ("rerank-depth-without-rerank", "--corpus, --lucene-index, --rerank-depth and --rerank-keep-rest are for "),
    ("run-mixed-columns", "run.trec:2: 3 columns, but the run's first line has 6"),
])
def test_bad_input_one_line_exit_2_no_output(world, tmp_path, capsys, case, message):
    out = tmp_path / "out" / "run.trec"
    base = ["--encoder", world["encoder"], "--output", out]
    topics, index = ["--topics", world["topics"]], ["--index", world["full"]]
    if case in ("hits0", "hits-neg"):
        argv = topics + index + base + ["--hits", "0" if case == "hits0" else "-5"]
    elif case == "missing-topics":
        argv = ["--topics", tmp_path / "absent.tsv"] + index + base
    elif case in ("malformed-topics", "empty-query"):
        p = tmp_path / "topics.tsv"
        p.write_text("1 no tab\n" if case == "malformed-topics" else "1\tfine\n2\t \n", encoding="utf-8")
        argv = ["--topics", p] + index + base
    elif case == "run-columns":
        p = tmp_path / "run.trec"
        p.write_text("1 Q0 D1 1 3.0\n", encoding="utf-8")
        argv = topics + index + base + ["--rerank", p]
    elif case == "unknown-docids":
        p = tmp_path / "run.trec"
        p.write_text("1 Q0 D1 1 3.0 t\n1 Q0 NOPE 2 2.0 t\n", encoding="utf-8")
        argv = topics + index + base + ["--rerank", p]
    elif case == "docid-not-in-corpus":
        p = tmp_path / "run.trec"
        p.write_text("1 Q0 D1 1 3.0 t\n1 Q0 NOPE 2 2.0 t\n", encoding="utf-8")
        argv = topics + index + base + ["--rerank", p, "--corpus", world["corpus"]]
    elif case == "index-missing-files":
        broken = tmp_path / "broken"
        shutil.copytree(world["full"], broken)
        (broken / "index").unlink()
        argv = topics + ["--index", broken] + base
    elif case == "no-index":
        argv = topics + base
    elif case == "fingerprint":
        other = tmp_path / "other"
        write_index(other, ["x", "y"], world["vectors"][:2], {"encoder": "someone-else", "encoder_fingerprint":
                                                              "0123456789abcdef"})
        argv = topics + ["--index", other] + base
    elif case == "dimension":
        narrow = tmp_path / "narrow"
        write_index(narrow, ["x"], np.ones((1, 8), dtype=np.float32), {"encoder": "x"})
        argv = topics + ["--index", narrow] + base
    elif case == "truncated-gzip-topics":
        p = tmp_path / "topics.tsv.gz"
        p.write_bytes(gzip.compress(("".join(f"{i}\tquery number {i}\n" for i in range(200))).encode())[:-40])
        argv = ["--topics", p] + index + base
    elif case == "device-gpu":
        argv = topics + index + base + ["--device", "gpu"]
    elif case == "block-size-with-rerank":
        p = tmp_path / "run.trec"
        p.write_text("1 Q0 D1 1 3.0 t\n", encoding="utf-8")
        argv = topics + index + base + ["--rerank", p, "--block-size", "4"]
    elif case == "internal-search-param":
        argv = topics + index + base + ["--strategy", "surrogate", "--search-param", "vectors=x"]
    elif case == "rerank-depth-without-rerank":
        argv = topics + index + base + ["--rerank-depth", "10"]
    elif case == "run-mixed-columns":
        p = tmp_path / "run.trec"
        p.write_text("1 Q0 D1 1 3.0 t\n1 D2 2\n", encoding="utf-8")
        argv = topics + index + base + ["--rerank", p]
    else:  # output-dir
        out.mkdir(parents=True)
        argv = topics + index + ["--encoder", world["encoder"], "--output", out]
    assert cli(argv) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: ") and message in lines[0], lines
    assert not out.is_file()
    if out.parent.exists():
        assert [p for p in out.parent.iterdir() if p != out] == []


def test_force_searches_an_index_of_other_weights(world, tmp_path, capsys):
    other = tmp_path / "other"
    write_index(other, ["x", "y"], world["vectors"][:2], {"encoder": "someone-else",
                                                          "encoder_fingerprint": "0123456789abcdef"})
    out = tmp_path / "run.trec"
    assert cli(["--topics", world["topics"], "--index", other, "--encoder", world["encoder"], "--output", out,
                "--force"]) == 0
    assert len(out.read_text().splitlines()) == 8


def test_module_entry_point_exit_status(world, tmp_path):
    """The real ``python -m`` process: exit 2, a single stderr line, no file."""
    out = tmp_path / "run.trec"
    proc = subprocess.run([sys.executable, "-m", "pyserini_hypencoder.search", "--topics", world["topics"],
                           "--index", world["full"], "--output", out, "--hits", "0"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and not out.exists()
    assert proc.stderr.strip().splitlines() == [f"{PROG}: error: argument --hits: expected a positive integer, got 0"]


@pytest.mark.slow
def test_quiet_means_no_progress_bar_at_all(world, tmp_path):
    """The walkthrough saw transformers' weight-loading bar on every search and a stray 'scan corpus' line in a
    log: with --quiet a real search and rerank write no bar; without it, off a terminal, no scan bar either."""
    base = [sys.executable, "-m", "pyserini_hypencoder.search", "--topics", world["topics"], "--encoder",
            world["encoder"]]
    for mode in (["--index", world["full"]], ["--rerank", world["run"], "--corpus", world["corpus"]]):
        for flags in (["--quiet"], []):
            out = tmp_path / "run.trec"
            proc = subprocess.run(base + [str(a) for a in mode] + ["--output", str(out), *flags],
                                  capture_output=True, text=True)
            assert proc.returncode == 0 and out.is_file(), proc.stderr[-2000:]
            assert "scan corpus" not in proc.stderr
            if flags:
                assert "it/s]" not in proc.stderr and "%|" not in proc.stderr, proc.stderr[-2000:]
            else:   # the check can fail: without --quiet the search's own bars are there
                assert "%|" in proc.stderr
            out.unlink()


def test_graph_and_ivf_strategies_through_the_cli(world, tmp_path, capsys):
    """--strategy graph|ivf|surrogate run the registered strategies; with every document reachable they find the
    exact top hits.  Without the structure: one error line naming the command that adds it.  Each strategy's
    flags are --STRATEGY-PARAM (older spellings still accepted) and apply to that strategy only."""
    from pyserini_hypencoder import ann
    from pyserini_hypencoder.index import DenseIndex
    copy = tmp_path / "ann-index"
    shutil.copytree(world["full"], copy)
    common = ["--topics", world["topics"], "--index", copy, "--encoder", world["encoder"], "--hits", 5]
    assert cli(common + ["--strategy", "graph", "--output", tmp_path / "none.trec"]) == 2
    lines = error_lines(capsys)
    assert len(lines) == 1 and "--add graph" in lines[0] and not (tmp_path / "none.trec").exists()
    index = DenseIndex.open(copy)
    ann.add_graph(index, neighbours=8)
    ann.add_ivf(DenseIndex.open(copy), nlist=4)
    exact, graph, ivf, old = (tmp_path / f"{name}.trec" for name in ("exact", "graph", "ivf", "old"))
    assert cli(common + ["--output", exact]) == 0
    assert cli(common + ["--strategy", "graph", "--graph-entry-points", 40, "--graph-max-iter", 2,
                         "--output", graph]) == 0
    assert cli(common + ["--strategy", "ivf", "--ivf-nprobe", 4, "--output", ivf]) == 0
    want = {q: [e.docid for e in hits] for q, hits in read_run(exact).items()}
    for path in (graph, ivf):
        assert {q: [e.docid for e in hits] for q, hits in read_run(path).items()} == want
    assert cli(common + ["--search", "graph", "--entry-points", 40, "--max-iter", 2, "--output", old]) == 0
    assert old.read_bytes() == graph.read_bytes()   # the old spellings mean the same
    assert cli(common + ["--strategy", "ivf", "--search-param", "bogus=1", "--output", ivf]) == 2
    assert "unknown ivf search parameter 'bogus'" in error_lines(capsys)[0]
    assert cli(common + ["--strategy", "ivf", "--search-param", "nprobe=many", "--output", ivf]) == 2
    assert "ivf search parameter 'nprobe' expects int, got 'many'" in error_lines(capsys)[0]
    assert cli(common + ["--ivf-nprobe", 3, "--output", ivf]) == 2
    assert "--ivf-nprobe applies to --strategy ivf, not exact" in error_lines(capsys)[0]
    assert cli(common + ["--strategy", "graph", "--nprobe", 3, "--output", ivf]) == 2
    assert "--ivf-nprobe applies to --strategy ivf, not graph" in error_lines(capsys)[0]
    surrogate = tmp_path / "surrogate.trec"  # needs no structure; every document a candidate = exact
    assert cli(common + ["--strategy", "surrogate", "--surrogate-candidates", 1000, "--output", surrogate]) == 0
    assert {q: [e.docid for e in hits] for q, hits in read_run(surrogate).items()} == want
    assert cli(common + ["--candidates", 3, "--output", surrogate]) == 2
    assert "--surrogate-candidates applies to --strategy surrogate" in error_lines(capsys)[0]


@pytest.mark.parametrize("precision", [[], ["--bf16"]])
def test_runs_do_not_depend_on_the_batch_size(world, tmp_path, precision):
    """The walkthrough's query 1 scored 2.026558 alone and 2.026603 in a batch of 4: now every --batch-size writes
    the same bytes, for search and for rerank."""
    base = ["--topics", world["topics"], "--encoder", world["encoder"], *precision]
    for mode in (["--index", world["full"], "--hits", 10], ["--rerank", world["run"], "--corpus", world["corpus"]]):
        outputs = []
        for batch in (1, 3, 32):
            outputs.append(tmp_path / f"run-{batch}.trec")
            assert cli(base + mode + ["--batch-size", batch, "--output", outputs[-1]]) == 0
        assert outputs[0].read_bytes() == outputs[1].read_bytes() == outputs[2].read_bytes()


def test_approximate_searches_log_their_cost(world, tmp_path, caplog):
    """The share of documents the q-nets scored is logged; on a corpus this small the surrogate's default of 1,000
    candidates scores every document, and the log says that exact search would cost the same."""
    caplog.set_level("INFO")
    out = tmp_path / "run.trec"
    common = ["--topics", world["topics"], "--index", world["full"], "--encoder", world["encoder"], "--output", out]
    assert cli(common + ["--strategy", "surrogate"]) == 0
    assert "surrogate search: the q-nets scored 40 documents per query on average, 100.0% of the 40" in caplog.text
    assert "on a corpus this small it costs about as much as --strategy exact" in caplog.text
    caplog.clear()
    assert cli(common + ["--strategy", "surrogate", "--surrogate-candidates", 10, "--surrogate-anchors", 5,
                         "--hits", 5]) == 0
    assert "scored 15 documents per query on average, 37.5% of the 40" in caplog.text and "costs" not in caplog.text
