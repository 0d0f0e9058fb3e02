"""The encode CLI: corpus forms, resume, shards + merge, bad input.  Uses the tiny parity checkpoint."""
import gzip
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.encode import encode_corpus
from pyserini_hypencoder.formats import JsonlCorpus
from pyserini_hypencoder.encode._cli import PROG, main, merge_main
from pyserini_hypencoder.encoders import HypencoderDocumentEncoder
from pyserini_hypencoder.formats import join_title
from pyserini_hypencoder.index import DenseIndex, IndexWriter, partial_dir_for

WORDS = ("hyper network query passage retrieval score neural search embedding documents paris france capital "
         "concussion symptoms injury inner product state the of and").split()
N_DOCS = 30


def _docs(n=N_DOCS, seed=0):
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(n):
        title = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 4)))) if i % 3 else ""
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 40))))
        docs.append({"_id": f"D{i:03d}", "title": title, "text": text})
    return docs


def _write_jsonl(path, records, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture(scope="module")
def checkpoint(parity_dir):
    return str(parity_dir / "checkpoint_bin")


@pytest.fixture(scope="module")
def encoder(checkpoint):
    return HypencoderDocumentEncoder(checkpoint, max_length=32)


@pytest.fixture()
def beir(tmp_path):
    return _write_jsonl(tmp_path / "corpus.jsonl", _docs())


def _encode_args(corpus, out, checkpoint, *extra_input, output=(), encoder=()):
    return ["input", "--corpus", str(corpus), *extra_input, "output", "--embeddings", str(out), *output,
            "encoder", "--encoder", checkpoint, "--max-length", "32", "--batch-size", "4", "--quiet", *encoder]


def test_corpus_forms(tmp_path):
    docs = _docs()
    expected = [(d["_id"], join_title(d["title"], d["text"])) for d in docs]
    beir = _write_jsonl(tmp_path / "beir.jsonl", docs)
    assert list(JsonlCorpus(beir)) == expected
    # Pyserini's id/contents form: contents "title\ntext", split by --fields title text like Pyserini does
    pyserini = [{"id": d["_id"], "contents": f"{d['title']}\n{d['text']}"} for d in docs]
    _write_jsonl(tmp_path / "pys.jsonl", pyserini)
    assert list(JsonlCorpus(tmp_path / "pys.jsonl", fields=["title", "text"])) == expected
    assert [d for d, _ in JsonlCorpus(tmp_path / "pys.jsonl")] == [d for d, _ in expected]  # default: contents
    assert list(JsonlCorpus(tmp_path / "pys.jsonl"))[1][1] == pyserini[1]["contents"].strip()
    # a title beside Pyserini's contents: both are encoded, as the reranker reads the same record
    from pyserini_hypencoder.formats import document_text
    titled = [{"id": d["_id"], "title": d["title"], "contents": d["text"]} for d in docs]
    _write_jsonl(tmp_path / "titled.jsonl", titled)
    assert list(JsonlCorpus(tmp_path / "titled.jsonl")) == expected
    assert [document_text(r) for r in titled] == [t for _, t in expected]
    # gzip, and a folder of files read in name order (other files ignored)
    folder = tmp_path / "folder"
    folder.mkdir()
    _write_jsonl(folder / "part-1.jsonl.gz", docs[10:], gz=True)
    _write_jsonl(folder / "part-0.jsonl", docs[:10])
    (folder / "README.txt").write_text("not a corpus")
    assert list(JsonlCorpus(folder)) == expected
    corpus = JsonlCorpus(folder)
    assert corpus.scan() == N_DOCS
    assert list(corpus.slice(8, 12)) == expected[8:12]
    # explicit fields read BEIR records Pyserini's way too; --docid-field picks the id
    only_text = JsonlCorpus(beir, fields=["text"], docid_field="_id")
    assert list(only_text)[0] == (docs[0]["_id"], docs[0]["text"])


def test_scan_warns_about_documents_with_empty_text(tmp_path, caplog):
    docs = [{"_id": "a", "title": "T", "text": "body"}, {"_id": "b", "title": "", "text": ""},
            {"_id": "c", "title": " ", "text": "  "}]
    corpus = JsonlCorpus(_write_jsonl(tmp_path / "c.jsonl", docs))
    with caplog.at_level("WARNING"):
        assert corpus.scan() == 3      # still encoded, as Pyserini's dense encoder does
    assert corpus.empty_docids == ["b", "c"]
    assert "2 document(s) have empty text (e.g. b, c)" in caplog.text


def test_encode_matches_encoder(tmp_path, beir, checkpoint, encoder):
    out = tmp_path / "ix"
    assert run_cli(main, _encode_args(beir, out, checkpoint, output=["--chunk-size", "7", "--parquet"])) == 0
    index = DenseIndex.open(out)
    docs = _docs()
    assert index.docids == [d["_id"] for d in docs]
    reference = encoder.encode(texts=[d["text"] for d in docs], titles=[d["title"] for d in docs])
    np.testing.assert_allclose(index.vectors.block(0, N_DOCS).numpy(), reference, atol=1e-5)
    meta = index.meta
    assert meta["encoder"] == checkpoint and meta["encoder_fingerprint"] == encoder.fingerprint
    assert (meta["dimension"], meta["dtype"], meta["pooling"], meta["max_length"], meta["bf16"],
            meta["num_docs"]) == (128, "float32", "cls", 32, False, N_DOCS)
    import pyarrow.parquet as pq
    assert pq.read_table(out / "vectors.parquet").column("id").to_pylist() == index.docids
    assert sorted(os.listdir(tmp_path)) == ["corpus.jsonl", "ix"]


def test_reranker_encodes_missing_candidates_like_the_index(tmp_path, beir, checkpoint):
    """Candidates encoded from text use the index's max_length and precision, not the model's defaults."""
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    from pyserini_hypencoder.search import HypencoderReranker
    out = tmp_path / "short"
    assert run_cli(main, _encode_args(beir, out, checkpoint, encoder=["--max-length", "8"])) == 0   # last wins
    index = DenseIndex.open(out)
    assert index.meta["max_length"] == 8
    reranker = HypencoderReranker(HypencoderQueryEncoder(checkpoint), index=index, texts=JsonlCorpus(beir))
    encoded = reranker._encode_texts(index.docids[:3])
    np.testing.assert_allclose(np.stack([encoded[d] for d in index.docids[:3]]), index.vectors.block(0, 3).numpy(),
                               atol=1e-5)


def test_resume_equals_uninterrupted(tmp_path, beir, checkpoint, encoder, monkeypatch):
    whole = encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "whole", encoder_name="x", batch_size=4,
                          chunk_size=8, storage_dtype="bfloat16", progress=False)
    real_add, calls = IndexWriter.add, []

    def interrupted_add(self, docids, vectors):
        calls.append(len(docids))
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_add(self, docids, vectors)

    monkeypatch.setattr(IndexWriter, "add", interrupted_add)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "resumed", encoder_name="x", batch_size=4,
                      chunk_size=8, storage_dtype="bfloat16", progress=False)
    assert not (tmp_path / "resumed").exists() and partial_dir_for(tmp_path / "resumed").is_dir()
    monkeypatch.setattr(IndexWriter, "add", real_add)
    encoded = []
    from pyserini_hypencoder.encoders import ChunkEncoder
    real_encode = ChunkEncoder.encode
    monkeypatch.setattr(ChunkEncoder, "encode", lambda self, texts, done=None: encoded.append(len(texts)) or
                        real_encode(self, texts, done))
    encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "resumed", encoder_name="x", batch_size=4, chunk_size=8,
                  storage_dtype="bfloat16", progress=False)
    assert encoded == [8, 6]  # only the chunks after the two completed ones
    for name in ("index", "docid", "meta.json", "vectors.npy"):
        assert (tmp_path / "resumed" / name).read_bytes() == (whole / name).read_bytes(), name
    assert not partial_dir_for(tmp_path / "resumed").exists()


def test_shards_and_merge_equal_whole(tmp_path, checkpoint):
    folder = tmp_path / "corpus"
    folder.mkdir()
    docs = _docs()
    _write_jsonl(folder / "a.jsonl.gz", docs[:13], gz=True)
    _write_jsonl(folder / "b.jsonl", docs[13:])
    output = ["--storage-dtype", "float16", "--parquet"]
    assert run_cli(main, _encode_args(folder, tmp_path / "whole", checkpoint, output=output)) == 0
    for shard in range(3):
        assert run_cli(main, _encode_args(folder, tmp_path / f"s{shard}", checkpoint, "--shard-id", str(shard),
                                          "--shard-num", "3", output=output)) == 0
    assert [DenseIndex.open(tmp_path / f"s{i}").num_docs for i in range(3)] == [10, 10, 10]
    shards = [str(tmp_path / f"s{i}") for i in (1, 0, 2)]
    assert run_cli(merge_main, ["--shards", *shards, "--output", str(tmp_path / "merged")]) == 0
    whole, merged = DenseIndex.open(tmp_path / "whole"), DenseIndex.open(tmp_path / "merged")
    assert merged.docids == whole.docids == [d["_id"] for d in docs]
    np.testing.assert_allclose(merged.vectors.block(0, N_DOCS).numpy(), whole.vectors.block(0, N_DOCS).numpy(), atol=1e-3)
    assert {k: v for k, v in merged.meta.items()} == {k: v for k, v in whole.meta.items()}
    import pyarrow.parquet as pq
    table = pq.read_table(tmp_path / "merged" / merged.meta["parquet"])   # the file its meta names exists
    assert table.column("id").to_pylist() == merged.docids


def _bad(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines))
    return path


@pytest.mark.parametrize("case, message", [
    ("missing-corpus", "no such corpus file or folder"),
    ("malformed", "bad.jsonl:2: malformed JSON"),
    ("no-fields", "none of the fields 'title', 'text' or 'contents'"),
    ("no-id", "bad.jsonl:1: record has no 'id', '_id' or 'docid' field"),
    ("duplicate", "duplicate docid 'D001'"),
    ("bad-shard", "--shard-id must lie in 0..2"),
    ("exists", "exists and is not empty"),
    ("bad-encoder", "no such checkpoint directory"),
    ("no-output-group", "the 'output' group is missing"),
    ("bad-flag", "unrecognized arguments: --nope"),
])
def test_bad_input(tmp_path, beir, checkpoint, capsys, case, message):
    out = tmp_path / "out"
    corpus, extra, encoder_args = beir, [], []
    if case == "missing-corpus":
        corpus = tmp_path / "nowhere.jsonl"
    elif case == "malformed":
        corpus = _bad(tmp_path, "bad.jsonl", ['{"_id": "1", "text": "a"}', '{"_id": "2", "text": '])
    elif case == "no-fields":
        corpus = _bad(tmp_path, "bad.jsonl", ['{"_id": "1", "body": "a"}'])
    elif case == "no-id":
        corpus = _bad(tmp_path, "bad.jsonl", ['{"text": "a"}'])
    elif case == "duplicate":
        corpus = _bad(tmp_path, "bad.jsonl", ['{"_id": "D001", "text": "a"}'] * 2)
    elif case == "bad-shard":
        extra = ["--shard-id", "3", "--shard-num", "3"]
    elif case == "exists":
        out.mkdir()
        (out / "something").write_text("x")
    elif case == "bad-encoder":
        checkpoint = str(tmp_path / "no-model")
    elif case == "bad-flag":
        encoder_args = ["--nope"]
    argv = _encode_args(corpus, out, checkpoint, *extra, encoder=encoder_args)
    if case == "no-output-group":
        argv = argv[:argv.index("output")] + argv[argv.index("encoder"):]
    with pytest.raises(SystemExit) if case == "bad-flag" else _no_raise() as raised:
        code = run_cli(main, argv, prog=PROG)
    code = raised.value.code if case == "bad-flag" else code
    err = capsys.readouterr().err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert code == 2 and len(error_lines) == 1 and message in error_lines[0], err
    assert "Traceback" not in err
    leftovers = sorted(os.listdir(tmp_path))
    assert "out" not in leftovers or case == "exists"
    assert not any(name.endswith(".partial") for name in leftovers)


class _no_raise:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.slow
def test_module_entry_point(tmp_path):
    """``python -m pyserini_hypencoder.encode`` and ``.encode.merge`` exist and fail with one line, exit 2."""
    result = subprocess.run([sys.executable, "-m", "pyserini_hypencoder.encode", "input", "--corpus",
                             str(tmp_path / "none.jsonl"), "output", "--embeddings", str(tmp_path / "o")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [f"{PROG}: error: {tmp_path / 'none.jsonl'}: no such corpus file "
                                                  f"or folder"]
    assert os.listdir(tmp_path) == []


def test_bench_encode_quick(tmp_path, checkpoint):
    """benchmarks/bench_encode.py --quick runs and reports both paths on the same batches."""
    import importlib.util

    from conftest import REPO
    spec = importlib.util.spec_from_file_location("bench_encode", REPO / "benchmarks" / "bench_encode.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--encoder", checkpoint, "--corpus", str(tmp_path / "absent.jsonl"),
                       "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["source"] == "synthetic" and result["docs"] == 32
    assert set(result["seconds"]) == {"full", "bare", "unsorted"} and result["full_over_bare"] > 0
    assert result["padded_tokens"]["sorted"] <= result["padded_tokens"]["unsorted"]


def test_a_model_with_the_same_document_side_searches_the_index(tmp_path, beir, checkpoint):
    """Another hyper head over the same passage backbone (a frozen-backbone training run) gives the same
    document vectors, so the index needs no re-encoding; other backbone weights are still refused."""
    import torch
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    from pyserini_hypencoder.index import IndexMismatchError
    from pyserini_hypencoder.model import load_hypencoder
    from pyserini_hypencoder.search import HypencoderSearcher
    out = tmp_path / "ix"
    assert run_cli(main, _encode_args(beir, out, checkpoint)) == 0
    other_head = load_hypencoder(checkpoint)
    with torch.no_grad():
        next(other_head.head.parameters()).add_(0.5)
    encoder = HypencoderQueryEncoder(other_head)
    assert encoder.fingerprint != DenseIndex.open(out).meta["encoder_fingerprint"]
    assert encoder.document_fingerprint == DenseIndex.open(out).meta["document_fingerprint"]
    assert len(HypencoderSearcher(str(out), encoder).search("protein folding", k=3)) == 3
    other_backbone = load_hypencoder(checkpoint)
    with torch.no_grad():
        next(other_backbone.passage_encoder().parameters()).add_(0.5)
    with pytest.raises(IndexMismatchError, match="document sides differ"):
        HypencoderSearcher(str(out), HypencoderQueryEncoder(other_backbone))


def test_progress_moves_per_batch_not_per_chunk(tmp_path, beir, encoder, monkeypatch):
    """A corpus smaller than one chunk still moves the bar batch by batch (walkthrough: it sat at 0/1460)."""
    import pyserini_hypencoder.encode._encode as module
    updates = []

    class Bar:
        def __init__(self, **kwargs):
            pass

        def update(self, n):
            updates.append(n)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(module, "tqdm", Bar)
    encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "ix", encoder_name="x", batch_size=4, chunk_size=4096,
                  progress=True)
    assert sum(updates) == N_DOCS and len(updates) == -(-N_DOCS // 4)   # one update per batch of 4


def test_an_interrupt_says_what_it_kept(tmp_path, beir, encoder, monkeypatch, caplog):
    """Interrupted before a chunk is complete: no hidden partial directory, and the log says nothing was kept;
    after a completed chunk: the log says how many documents wait to be resumed."""
    from pyserini_hypencoder.encoders import ChunkEncoder
    real_encode, calls = ChunkEncoder.encode, []

    def interrupted(after):
        def encode(self, texts, done=None):
            calls.append(len(texts))
            if len(calls) > after:
                raise KeyboardInterrupt
            return real_encode(self, texts, done)
        return encode

    monkeypatch.setattr(ChunkEncoder, "encode", interrupted(0))
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "a", encoder_name="x", batch_size=4, chunk_size=4096,
                      progress=False)
    assert os.listdir(tmp_path) == ["corpus.jsonl"]   # neither the index nor a .a.partial directory
    assert "interrupted before the first chunk of 4096 documents was complete: nothing was kept" in caplog.text
    calls.clear()
    monkeypatch.setattr(ChunkEncoder, "encode", interrupted(1))
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "b", encoder_name="x", batch_size=4, chunk_size=8,
                      progress=False)
    assert partial_dir_for(tmp_path / "b").is_dir()
    assert f"interrupted: 8 documents (completed chunks of 8) are kept in {partial_dir_for(tmp_path / 'b')}" \
        in caplog.text


def test_a_resume_refusal_names_the_setting_that_differs(tmp_path, beir, encoder, monkeypatch):
    real_add = IndexWriter.add

    def add_once(self, docids, vectors):   # the first chunk completes, the second is interrupted
        if self.num_added:
            raise KeyboardInterrupt
        real_add(self, docids, vectors)

    monkeypatch.setattr(IndexWriter, "add", add_once)
    with pytest.raises(KeyboardInterrupt):
        encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "ix", encoder_name="x", batch_size=4, chunk_size=8,
                      progress=False)
    with pytest.raises(FileExistsError, match=r"other settings is there \(batch_size: 4 then, 32 now\); rerun"):
        encode_corpus(JsonlCorpus(beir), encoder, tmp_path / "ix", encoder_name="x", batch_size=32, chunk_size=8,
                      progress=False)


def test_help_and_input_errors_come_before_torch_and_pyserini(tmp_path):
    """encode --help and its input errors answer without importing torch or Pyserini (they took 7-12 s)."""
    code = ("import sys; from pyserini_hypencoder.cli import run_cli; from pyserini_hypencoder.encode._cli import "
            "main, PROG\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"code = run_cli(main, ['input', '--corpus', {str(tmp_path / 'none.jsonl')!r}, 'output', '--embeddings', "
            f"{str(tmp_path / 'o')!r}], PROG)\n"
            "print(code, 'torch' in sys.modules, any(m.startswith('pyserini.') for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "2 False False", result.stdout + result.stderr
    assert "no such corpus file or folder" in result.stderr


def test_searcher_doc_reads_documents_by_docid(tmp_path, checkpoint):
    """HypencoderSearcher.doc(docid), as LuceneSearcher.doc: from the corpus the index records (plain or gzip,
    looked up by offset, not loaded), or from the corpus given; None for an unknown docid."""
    from pyserini_hypencoder.search import HypencoderSearcher
    folder = tmp_path / "corpus"
    folder.mkdir()
    docs = _docs()
    _write_jsonl(folder / "a.jsonl.gz", docs[:13], gz=True)
    _write_jsonl(folder / "b.jsonl", docs[13:])
    assert run_cli(main, _encode_args(folder, tmp_path / "ix", checkpoint)) == 0
    searcher = HypencoderSearcher(str(tmp_path / "ix"), checkpoint)
    for record in (docs[2], docs[20]):   # one from the gzipped file, one from the plain one
        doc = searcher.doc(record["_id"])
        assert doc.docid() == record["_id"] and json.loads(doc.raw()) == record
        assert doc.contents() == join_title(record["title"], record["text"])
    assert searcher.doc("NOPE") is None
    assert searcher._documents._offsets is not None and not hasattr(searcher._documents, "records")
    elsewhere = tmp_path / "moved.jsonl"
    _write_jsonl(elsewhere, docs[:3])
    assert HypencoderSearcher(str(tmp_path / "ix"), checkpoint, corpus=elsewhere).doc(docs[20]["_id"]) is None
    meta_path = tmp_path / "ix" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("corpus")
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="the index records no corpus; give the searcher corpus= or lucene_index="):
        HypencoderSearcher(str(tmp_path / "ix"), checkpoint).doc(docs[0]["_id"])
