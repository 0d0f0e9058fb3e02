"""The main-job module's data handling: finding ../shared, BEIR files to TREC files, the offline message."""
import io
import json
import urllib.error
import zipfile

import pytest

from pyserini_hypencoder import reproduce
from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.formats import JsonlCorpus, read_topics, write_json_collection


def beir_folder(root):
    root.mkdir(parents=True)
    (root / "qrels").mkdir()
    (root / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "body"}\n', encoding="utf-8")
    (root / "queries.jsonl").write_text('{"_id": "1", "text": "first"}\n{"_id": "2", "text": "second"}\n',
                                        encoding="utf-8")
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n2\td1\t1\n", encoding="utf-8")
    return root


def test_trec_files_from_beir_layout(tmp_path):
    folder = beir_folder(tmp_path / "scifact")
    reproduce.add_trec_files(folder, "test")
    assert read_topics(folder / "topics.test.tsv") == {"2": "second"}  # judged test queries only
    assert (folder / "qrels.test.txt").read_text() == "2 0 d1 1\n"


def test_flat_collection_joins_title_and_text(tmp_path):
    folder = beir_folder(tmp_path / "scifact")
    out = tmp_path / "coll" / "docs.jsonl"
    write_json_collection(JsonlCorpus(folder / "corpus.jsonl"), out)   # what reproduce indexes for BM25 "flat"
    assert [json.loads(line) for line in out.read_text().splitlines()] == [{"id": "d1", "contents": "T body"}]


def test_shared_data_is_found(scifact_dir):
    assert reproduce.find_shared("scifact").samefile(scifact_dir)


def test_download_uses_the_cache_and_says_when_offline(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    with pytest.raises(ValueError, match="cannot be downloaded .*name resolution"):
        reproduce.download_scifact(tmp_path / "cache")
    assert not any((tmp_path / "cache").glob("*.part"))

    payload = io.BytesIO()
    source = beir_folder(tmp_path / "zipped" / "scifact")
    with zipfile.ZipFile(payload, "w") as z:
        for path in source.rglob("*"):
            if path.is_file():
                z.write(path, path.relative_to(source.parent).as_posix())

    class Response(io.BytesIO):
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: Response(payload.getvalue()))
    half = beir_folder(tmp_path / "cache" / "scifact")   # an earlier extraction that stopped before corpus.jsonl
    (half / "corpus.jsonl").unlink()
    (half / "topics.test.tsv").write_text("2\tsec")
    folder = reproduce.download_scifact(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "scifact"
    assert (folder / "topics.test.tsv").read_text() == "2\tsecond\n"
    monkeypatch.setattr("urllib.request.urlopen", offline)  # a second call reads the cache only
    assert reproduce.download_scifact(tmp_path / "cache") == folder


def test_bad_data_folder_is_one_error_line(tmp_path, capsys):
    code = run_cli(reproduce.main, ["scifact", "--data", str(tmp_path / "nothing")], prog=reproduce.PROG)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"{reproduce.PROG}: error: {tmp_path / 'nothing'}: no corpus.jsonl (expected a BEIR-layout " \
                      f"SciFact folder)"


def test_reuse_checks_what_it_reuses(tmp_path):
    """The walkthrough reused SciFact's outputs for another collection, printed 0.0000 everywhere and exited 0:
    a reused index or run must record the same inputs, else the job refuses with one line."""
    corpus, other = tmp_path / "corpus.jsonl", tmp_path / "other.jsonl"
    corpus.write_text('{"_id": "d1", "text": "a"}\n', encoding="utf-8")
    other.write_text('{"_id": "x9", "text": "b"}\n', encoding="utf-8")
    target = tmp_path / "lucene.x"
    target.mkdir()
    with pytest.raises(ValueError, match=r"BM25 index: will not reuse .*lucene.x \(no record of its inputs"):
        reproduce.check_reuse("BM25 index", target, {"corpus": reproduce.file_digest(corpus)})
    reproduce.write_json(reproduce.provenance_file(target), {"corpus": reproduce.file_digest(corpus)})
    reproduce.check_reuse("BM25 index", target, {"corpus": reproduce.file_digest(corpus)})   # the same inputs
    with pytest.raises(ValueError, match="built from corpus '.*'; now .*pass --no-reuse"):
        reproduce.check_reuse("BM25 index", target, {"corpus": reproduce.file_digest(other)})
    meta = {"corpus": {"path": str(corpus)}, "encoder_fingerprint": "f" * 16, "bf16": True, "num_docs": 1}
    index = tmp_path / "dense"
    index.mkdir()
    (index / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    reproduce.check_index_reuse(index, corpus, "f" * 16, True, 1)
    with pytest.raises(ValueError, match=r"it holds another corpus, other encoder weights, another precision, "
                                         r"1 documents, not 5\)"):
        reproduce.check_index_reuse(index, other, "0" * 16, False, 5)


def test_a_job_whose_runs_all_score_zero_fails(monkeypatch, capsys):
    report = reproduce.Report("a job", rows={"BM25": {"ndcg_cut_10": 0.0}, "Hypencoder": {"ndcg_cut_10": 0.0}})
    monkeypatch.setattr(reproduce, "reproduce_dl19", lambda args: report)
    assert run_cli(reproduce.main, ["dl19"], prog=reproduce.PROG) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(
        f"{reproduce.PROG}: error: every run scores 0 nDCG@10 against the qrels")
