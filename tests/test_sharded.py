"""Shards searched as one without merging: the run files of exact and surrogate search and of reranking equal the
merged index's byte for byte (tiny parity checkpoint, shards written by ``encode --shard-id/--shard-num``); graph
and ivf search each shard's own structure; incompatible shards are one error line, exit 2, nothing written."""
import json
import shutil

import numpy as np
import pytest

from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.encode._cli import main as encode_main, merge_main
from pyserini_hypencoder.encoders import HypencoderQueryEncoder
from pyserini_hypencoder.formats import read_run
from pyserini_hypencoder.index import ConcatRows, DenseIndex, ShardedIndex, open_index, write_index
from pyserini_hypencoder.search import HypencoderSearcher
from pyserini_hypencoder.search._main import main as search_main

WORDS = "the a cell cells protein gene dna cancer risk blood brain virus study test patients".split()
N_DOCS, SHARDS = 45, 3


def cli(main, argv):
    try:
        return run_cli(main, [str(a) for a in argv])
    except SystemExit as exc:
        return exc.code


@pytest.fixture(scope="module")
def world(tmp_path_factory, parity_dir):
    """A 45-document corpus encoded whole-then-merged from 3 shards, per storage dtype; topics; a first-stage run."""
    root = tmp_path_factory.mktemp("sharded")
    rng = np.random.default_rng(5)
    docs = [{"_id": f"D{i:02d}", "title": WORDS[i % len(WORDS)], "text": " ".join(rng.choice(WORDS, size=8 + i % 5))}
            for i in range(N_DOCS)]
    docs.append(dict(docs[7], _id="D99"))   # a duplicate text: its score ties D07's in whichever shard it is
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    topics = root / "topics.tsv"
    topics.write_text("1\tcancer risk in patients\n2\tprotein gene dna\n3\tbrain virus study\n", encoding="utf-8")
    checkpoint = str(parity_dir / "checkpoint_bin")
    out = {}
    for dtype in ("float32", "bfloat16"):
        shards = root / dtype / "shards"
        for i in range(SHARDS):
            assert cli(encode_main, ["input", "--corpus", corpus, "--shard-id", i, "--shard-num", SHARDS, "output",
                                     "--embeddings", shards / f"part-{i}", "--storage-dtype", dtype, "encoder",
                                     "--encoder", checkpoint, "--max-length", "32", "--batch-size", "4",
                                     "--quiet"]) == 0
        merged = root / dtype / "merged"
        assert cli(merge_main, ["--shards", *sorted(shards.iterdir()), "--output", merged, "--quiet"]) == 0
        out[dtype] = dict(shards=shards, merged=merged)
    run = root / "first-stage.trec"
    run.write_text("".join(f"{q} Q0 D{j:02d} {r + 1} {50 - r} bm25\n" for q in "123"
                           for r, j in enumerate(rng.permutation(N_DOCS)[:30])), encoding="utf-8")
    return dict(root=root, corpus=corpus, topics=topics, checkpoint=checkpoint, run=run, **out)


def _search(world, index, output, *extra):
    assert cli(search_main, ["--topics", world["topics"], "--index", index, "--encoder", world["checkpoint"],
                             "--hits", 20, "--output", output, "--quiet", *extra]) == 0
    return output.read_bytes()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("strategy", [["--exact-block-size", "7"], [],
                                      ["--strategy", "surrogate", "--surrogate-candidates", "12",
                                       "--surrogate-anchors", "16"]])
def test_sharded_runs_equal_the_merged_index(world, tmp_path, dtype, strategy):
    paths = world[dtype]
    merged = _search(world, paths["merged"], tmp_path / "merged.trec", *strategy)
    listed = ",".join(str(p) for p in sorted(paths["shards"].iterdir(), reverse=True))   # any order: shard ids
    assert _search(world, paths["shards"], tmp_path / "dir.trec", *strategy) == merged
    assert _search(world, listed, tmp_path / "list.trec", *strategy) == merged
    assert len(merged.splitlines()) == 60


def test_rerank_looks_candidates_up_across_shards(world, tmp_path):
    paths = world["bfloat16"]
    rerank = ["--rerank", world["run"], "--rerank-depth", 25]
    assert (_search(world, paths["shards"], tmp_path / "s.trec", *rerank)
            == _search(world, paths["merged"], tmp_path / "m.trec", *rerank))


def test_the_view_reads_what_the_merged_index_holds(world):
    sharded, merged = open_index(world["float32"]["shards"]), DenseIndex.open(world["float32"]["merged"])
    assert isinstance(sharded, ShardedIndex) and [len(s.docids) for s in sharded.shards] == [15, 15, 16]
    assert sharded.docids == merged.docids and sharded.num_docs == N_DOCS + 1 and sharded.offsets == [0, 15, 30]
    rows = [45, 0, 14, 15, 29, 30, 3, 3]
    assert np.array_equal(sharded.vectors.rows(rows).numpy(), merged.vectors.rows(rows).numpy())
    for start, stop in ((0, 46), (10, 20), (15, 30), (29, 31), (40, 99)):
        assert np.array_equal(sharded.vectors.block(start, stop).numpy(), merged.vectors.block(start, stop).numpy())
    assert np.array_equal(sharded.rows_for(["D44", "nope", "D00"]), merged.rows_for(["D44", "nope", "D00"]))
    view = ConcatRows([np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)])
    assert view[1:3].tolist() == [[0, 0, 0], [1, 1, 1]] and view[[2]].tolist() == [[1, 1, 1]]
    with pytest.raises(IndexError):
        view[[3]]


def test_graph_and_ivf_search_each_shards_structure(world, tmp_path, capsys):
    from pyserini_hypencoder import ann
    shards = tmp_path / "shards"
    shutil.copytree(world["float32"]["shards"], shards)
    common = ["--strategy", "ivf", "--ivf-nprobe", 4]
    assert cli(search_main, ["--topics", world["topics"], "--index", shards, "--encoder", world["checkpoint"],
                             "--output", tmp_path / "none.trec", *common]) == 2
    err = capsys.readouterr().err
    assert "part-0: the index has no ivf structure" in err and "--add ivf" in err
    assert not (tmp_path / "none.trec").exists()
    for part in sorted(shards.iterdir()):
        ann.add_ivf(DenseIndex.open(part), nlist=4)
        ann.add_graph(DenseIndex.open(part), neighbours=6)
    exact = read_run(tmp_path / "exact.trec") if _search(world, shards, tmp_path / "exact.trec") else None
    want = {q: [e.docid for e in hits] for q, hits in exact.items()}
    for name, extra in (("ivf", common), ("graph", ["--strategy", "graph", "--graph-entry-points", 20,
                                                    "--graph-max-iter", 3])):
        _search(world, shards, tmp_path / f"{name}.trec", *extra)   # every list probed / every node reached
        # the same documents with the same scores; graph and ivf score gathered rows, whose last float bit may differ
        # from exact search's blocks, so two documents a printed 1e-6 apart may swap
        got = read_run(tmp_path / f"{name}.trec")
        assert {q: sorted(e.docid for e in hits) for q, hits in got.items()} == \
            {q: sorted(docids) for q, docids in want.items()}, name
        for q, hits in got.items():
            scores = {e.docid: e.score for e in exact[q]}
            assert all(abs(e.score - scores[e.docid]) <= 2e-6 for e in hits), (name, q)
    searcher = HypencoderSearcher(open_index(shards), HypencoderQueryEncoder(world["checkpoint"]), strategy="ivf",
                                  search_params={"nprobe": 4})
    assert searcher.scored_share == 0 and [h.docid for h in searcher.search("cancer risk", k=3)]


def _copy_shards(world, tmp_path, edit=None):
    shards = tmp_path / "bad"
    shutil.copytree(world["float32"]["shards"], shards)
    if edit:
        meta_file = shards / "part-1" / "meta.json"
        meta = json.loads(meta_file.read_text())
        edit(meta)
        meta_file.write_text(json.dumps(meta))
    return shards


@pytest.mark.parametrize("case, message", [
    ("fingerprint", "part-1: encoder_fingerprint is 'other', but"),
    ("dtype", "shards must come from the same encoder run"),
    ("duplicate", "docid 'D00' is in two shards:"),
    ("missing", "need each shard id 0..2 once"),
    ("twice", "a shard is named twice"),
])
def test_incompatible_shards_are_one_line_exit_2_nothing_written(world, tmp_path, capsys, case, message):
    if case == "fingerprint":
        index = _copy_shards(world, tmp_path, lambda m: m.update(encoder_fingerprint="other"))
    elif case == "dtype":
        index = _copy_shards(world, tmp_path)
        shutil.rmtree(index / "part-1")
        shutil.copytree(world["bfloat16"]["shards"] / "part-1", index / "part-1")
    elif case == "duplicate":   # two unnumbered indexes sharing a docid
        vectors = np.ones((2, 8), np.float32)
        a = write_index(tmp_path / "a", ["D00", "X"], vectors, {"encoder": "e"})
        b = write_index(tmp_path / "b", ["Y", "D00"], vectors, {"encoder": "e"})
        index = f"{a},{b}"
        message += f" {a} and {b}"
    elif case == "missing":
        index = _copy_shards(world, tmp_path)
        shutil.rmtree(index / "part-1")
    else:
        part = world["float32"]["shards"] / "part-0"
        index = f"{part},{part}"
    output = tmp_path / "run.trec"
    assert cli(search_main, ["--topics", world["topics"], "--index", index, "--encoder", world["checkpoint"],
                             "--output", output]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not output.exists()


@pytest.mark.parametrize("case", ["no-ray", "unreachable", "surrogate"])
def test_ray_bad_input_is_one_line_exit_2_nothing_written(world, tmp_path, capsys, monkeypatch, case):
    """--ray without the extra names the pip command; an address that does not answer fails in one line before
    anything starts (no cluster is needed for either); both for search and encode."""
    import sys
    if case == "no-ray":
        monkeypatch.setitem(sys.modules, "ray", None)   # import ray raises ImportError
        message, address = 'install the extra: pip install "pyserini-hypencoder[ray]"', []
    else:
        pytest.importorskip("ray", reason='the ray extra is not installed (pip install "pyserini-hypencoder[ray]")')
        message, address = "cannot reach a Ray cluster at 127.0.0.1:9", ["127.0.0.1:9"]
    output = tmp_path / "run.trec"
    if case == "surrogate":   # refused before Ray is asked for anything
        assert cli(search_main, ["--topics", world["topics"], "--index", world["float32"]["shards"], "--encoder",
                                 world["checkpoint"], "--output", output, "--ray", "--strategy", "surrogate"]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and "with --ray use exact, graph or ivf" in lines[0], lines
        assert not output.exists()
        return
    assert cli(search_main, ["--topics", world["topics"], "--index", world["float32"]["shards"], "--encoder",
                             world["checkpoint"], "--output", output, "--ray", *address]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not output.exists()
    out = tmp_path / "index"
    assert cli(encode_main, ["input", "--corpus", world["corpus"], "output", "--embeddings", out, "encoder",
                             "--encoder", world["checkpoint"], "--quiet", "--ray", *address]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()
