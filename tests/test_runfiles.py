"""Topics and run files: Pyserini's formats in, Pyserini's exact TREC / MS MARCO lines out, bad input refused."""
import gzip
import json

import pytest

from pyserini_hypencoder._fsutil import atomic_file
from pyserini_hypencoder.formats import RunEntry, format_run_lines, rank_hits, read_run, read_topics, write_run


# -- topics ---------------------------------------------------------------------------------------------------------
def test_tsv_topics_keep_file_order_and_string_ids(tmp_path):
    path = tmp_path / "topics.tsv"
    path.write_text("10\tsecond query\n2\tfirst\tquery with a tab\n\nq-3\t  padded  \n", encoding="utf-8")
    assert read_topics(path) == {"10": "second query", "2": "first\tquery with a tab", "q-3": "padded"}
    assert list(read_topics(path)) == ["10", "2", "q-3"]


def test_byte_order_mark_is_not_part_of_the_first_qid(tmp_path):
    path = tmp_path / "bom.tsv"
    path.write_bytes("\ufeff1\tfirst\n2\tsecond\n".encode("utf-8"))
    assert read_topics(path) == {"1": "first", "2": "second"}


def test_gzipped_tsv_topics(tmp_path):
    path = tmp_path / "topics.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("1\tgzipped query\n")
    assert read_topics(path) == {"1": "gzipped query"}


@pytest.mark.parametrize("record,qid,text", [
    ({"id": "q1", "title": "pyserini form"}, "q1", "pyserini form"),
    ({"_id": "7", "text": "beir form", "metadata": {}}, "7", "beir form"),
    ({"qid": 3, "query": "raw jsonl form"}, "3", "raw jsonl form"),
])
def test_jsonl_topics(tmp_path, record, qid, text):
    path = tmp_path / "topics.jsonl"
    path.write_text(json.dumps(record) + "\n", encoding="utf-8")
    assert read_topics(path) == {qid: text}


def test_shared_scifact_topics(scifact_dir):
    topics = read_topics(scifact_dir / "topics.test.tsv")
    assert len(topics) == 300 and all(t.strip() for t in topics.values())


@pytest.mark.parametrize("name,content,message", [
    ("t.tsv", "1\tok\n2\t   \n", "empty query text for query 2"),
    ("t.tsv", "1 no tab here\n", "expected 'qid<TAB>query text'"),
    ("t.tsv", "1\ta\n1\tb\n", "duplicate query id 1"),
    ("t.tsv", "\n\n", "no topics"),
    ("t.jsonl", '{"id": "1", "title": ""}\n', "empty query text"),
    ("t.jsonl", '{"id": "1"}\n', "no query text"),
    ("t.jsonl", '{"title": "x"}\n', "no query id"),
    ("t.jsonl", '{"id": "1", "title": "x"\n', "malformed JSON"),
    ("t.xml", "<topics/>", "unknown topics format"),
])
def test_bad_topics_are_one_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_topics(path)


def test_missing_topics_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="topics file not found"):
        read_topics(tmp_path / "absent.tsv")
    with pytest.raises(IsADirectoryError):
        read_topics(tmp_path)


def test_unknown_topic_name_is_a_clear_error():
    with pytest.raises(ValueError, match="neither a topics file nor a Pyserini topic name"):
        read_topics("no-such-topic-set-xyz")


# -- runs -----------------------------------------------------------------------------------------------------------
def test_trec_run_sorted_by_rank(tmp_path):
    path = tmp_path / "run.trec"
    path.write_text("1 Q0 d2 2 5.5 bm25\n1 Q0 d1 1 7.25 bm25\n2 Q0 d9 1 1.0 bm25\n", encoding="utf-8")
    run = read_run(path)
    assert run == {"1": [RunEntry("d1", 1, 7.25), RunEntry("d2", 2, 5.5)], "2": [RunEntry("d9", 1, 1.0)]}


def test_msmarco_runs(tmp_path):
    three = tmp_path / "run.tsv"
    three.write_text("1\tdB\t2\n1\tdA\t1\n", encoding="utf-8")
    assert [e.docid for e in read_run(three)["1"]] == ["dA", "dB"]
    scored = tmp_path / "tevatron.tsv"  # qid docid score: ordered by score
    scored.write_text("1\tlow\t0.5\n1\thigh\t2.5\n", encoding="utf-8")
    assert [e.docid for e in read_run(scored)["1"]] == ["high", "low"]
    four = tmp_path / "run4.tsv"
    four.write_text("1 dB 2 3.0\n1 dA 1 4.0\n", encoding="utf-8")
    assert read_run(four)["1"][0] == RunEntry("dA", 1, 4.0)
    four_q0 = tmp_path / "run4q0.txt"
    four_q0.write_text("1 Q0 dB 2\n1 Q0 dA 1\n", encoding="utf-8")
    assert [e.docid for e in read_run(four_q0)["1"]] == ["dA", "dB"]


def test_shared_dl19_bm25_run(dl19_dir):
    run = read_run(dl19_dir / "runs" / "bm25.trec")
    assert len(run) == 43 and all(len(v) == 100 for v in run.values())
    assert all([e.rank for e in v] == list(range(1, 101)) for v in run.values())


@pytest.mark.parametrize("content,message", [
    ("1 Q0 d1 1 2.0\n", "expected 6 columns .* got 5"),
    ("1 d1\n", "got 2"),
    ("1 Q0 d1 one 2.0 tag\n", "rank 'one' is not a number"),
    ("1 Q0 d1 1 high tag\n", "score 'high' is not a number"),
    ("1 Q0 d1 1 2.0 t\n1 Q0 d1 2 1.0 t\n", "appears twice"),
    ("\n", "empty"),
    ("1 Q0 184 1 3.0 x\n1 29 2\n", r"run.trec:2: 3 columns, but the run's first line has 6"),
    ("1 Q0 29\n", "a TREC line needs 6 columns"),
])
def test_bad_runs(tmp_path, content, message):
    path = tmp_path / "run.trec"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_run(path)


def test_missing_run(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_run(tmp_path / "absent.trec")


# -- writing --------------------------------------------------------------------------------------------------------
def test_trec_lines_are_pyserinis_format():
    lines = list(format_run_lines("q1", [(" d1 ", 1.23456789), ("d2", -0.5)], tag="Hypencoder"))
    assert lines == ["q1 Q0 d1 1 1.234568 Hypencoder\n", "q1 Q0 d2 2 -0.500000 Hypencoder\n"]


def test_msmarco_lines_and_max_hits():
    lines = list(format_run_lines("q1", [("d1", 3.0), ("d2", 2.0), ("d3", 1.0)], output_format="msmarco",
                                  max_hits=2))
    assert lines == ["q1\td1\t1\n", "q1\td2\t2\n"]


def test_bad_format_and_tag():
    with pytest.raises(ValueError, match="unknown output format"):
        list(format_run_lines("q", [("d", 1.0)], output_format="kilt"))
    with pytest.raises(ValueError, match="run tag"):
        list(format_run_lines("q", [("d", 1.0)], tag="two words"))


def test_rank_hits_breaks_ties_by_docid():
    assert rank_hits([("b", 1.0), ("a", 1.0), ("c", 2.0)]) == [("c", 2.0), ("a", 1.0), ("b", 1.0)]


def test_write_run_round_trip(tmp_path):
    path = tmp_path / "sub" / "run.trec"
    assert write_run(path, {"1": [("d1", 2.0), ("d2", 1.0)], "2": [("d3", 0.25)]}, tag="t") == 3
    assert read_run(path) == {"1": [RunEntry("d1", 1, 2.0), RunEntry("d2", 2, 1.0)], "2": [RunEntry("d3", 1, 0.25)]}
    assert [p.name for p in path.parent.iterdir()] == ["run.trec"]


def test_failed_write_leaves_nothing(tmp_path):
    path = tmp_path / "run.trec"
    with pytest.raises(RuntimeError):
        with atomic_file(path) as f:
            f.write("1 Q0 d1 1 1.000000 t\n")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    path.write_text("old\n")
    with pytest.raises(ValueError):
        write_run(path, {"1": [("d1", 1.0)]}, tag="bad tag")
    assert path.read_text() == "old\n" and len(list(tmp_path.iterdir())) == 1


def test_a_topics_header_line_is_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "topics.tsv"
    path.write_text("qid\tquery\n1\tfirst query\nqid2\tquery about qids\n", encoding="utf-8")
    assert read_topics(path) == {"1": "first query", "qid2": "query about qids"}   # only a first line is a header
    assert "topics.tsv:1: skipping a header line 'qid\\tquery'" in caplog.text


def test_comment_lines_in_a_run_are_skipped_with_a_warning(tmp_path, caplog):
    path = tmp_path / "run.trec"
    path.write_text("# produced by some tool\n1 Q0 d1 1 2.5 t\n#another\n1 Q0 d2 2 1.5 t\n", encoding="utf-8")
    assert [e.docid for e in read_run(path)["1"]] == ["d1", "d2"]
    assert "skipped 2 comment line(s) starting with '#'" in caplog.text


def test_json_and_field_errors_read_as_sentences(tmp_path):
    from pyserini_hypencoder.formats import JsonlCorpus
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "contents": "a\tb"}\n', encoding="utf-8")   # a raw tab inside a JSON string
    with pytest.raises(ValueError) as err:
        list(JsonlCorpus(bad))
    assert str(err.value).endswith("bad.jsonl:1: malformed JSON (Invalid control character at column 27)")
    good = tmp_path / "c.jsonl"
    good.write_text('{"id": "1", "text": "a"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"c.jsonl:1: record lacks field\(s\) 'contents'$"):
        list(JsonlCorpus(good, fields=["contents"]))
    with pytest.raises(ValueError, match=r"lacks field\(s\) 'title', 'body' and has no 'contents' to split them from$"):
        list(JsonlCorpus(good, fields=["title", "body"]))
