"""The servers as processes: ``python -m pyserini_hypencoder.server.rest`` (and ``.mcp``) on a free loopback port,
spoken to with a real HTTP client (httpx) and an MCP client session.  Answers equal HypencoderSearcher.search;
every bad input is a 4xx with a JSON detail and the server keeps serving; a full queue is a 503 with Retry-After;
a late answer a 504; SIGTERM with requests in flight answers them and exits 0.  Each server is stopped by its
pid in a finally.  (slow: each process loads torch and the model, a few seconds.)"""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

import pyserini_hypencoder

httpx = pytest.importorskip("httpx")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "docs" / "examples" / "pyserini_rest_client.py"
WORDS = "the a cell cells protein gene dna cancer risk blood brain virus study test patients".split()
QUERIES = ["cancer risk in patients", "protein gene dna", "brain virus study", "blood test", "cells", "risk risk"]


def _env():
    env = dict(os.environ)
    package_root = str(Path(pyserini_hypencoder.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


class Server:
    """A server process on 127.0.0.1, port 0 (the server picks a free one and logs it), with this process's torch
    thread count: a float sum can differ with the thread count, so equal answers need equal counts."""

    def __init__(self, module, args, log):
        self.log = Path(log)
        self.proc = subprocess.Popen([sys.executable, "-m", module, *map(str, args), "--port", "0", "--threads",
                                      str(torch.get_num_threads()), "--quiet"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=self.log.open("w"), env=_env(),
                                     cwd=self.log.parent)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = re.search(r"serving on (http://127\.0\.0\.1:\d+)", self.log.read_text())
            if found:
                self.url = found.group(1)
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"the server did not start:\n{self.log.read_text()[-3000:]}")

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


@pytest.fixture(scope="module")
def world(tmp_path_factory, parity_dir):
    """A 40-document BEIR corpus and its dense index (tiny parity checkpoint)."""
    from pyserini_hypencoder.encoders import HypencoderDocumentEncoder
    from pyserini_hypencoder.formats import join_title
    from pyserini_hypencoder.index import write_index
    root = tmp_path_factory.mktemp("server")
    rng = np.random.default_rng(11)
    docs = [{"_id": f"D{i}", "title": f"title {WORDS[i % len(WORDS)]}", "metadata": {"n": i},
             "text": " ".join(rng.choice(WORDS, size=12 + i % 7))} for i in range(40)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    encoder = str(parity_dir / "checkpoint_bin")
    enc = HypencoderDocumentEncoder(encoder)
    meta = {"encoder": encoder, "encoder_fingerprint": enc.fingerprint, "pooling": "cls",
            "max_length": enc.max_length, "bf16": False}
    index = write_index(root / "idx", [d["_id"] for d in docs], enc.encode([join_title(d["title"], d["text"])
                                                                           for d in docs]), meta)
    before = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in Path(index).rglob("*"))
    return dict(root=root, docs={d["_id"]: d for d in docs}, corpus=corpus, index=index, encoder=encoder,
                before=before)


@pytest.fixture(scope="module")
def searcher(world):
    from pyserini_hypencoder.encoders import HypencoderQueryEncoder
    from pyserini_hypencoder.search import HypencoderSearcher
    return HypencoderSearcher(world["index"], HypencoderQueryEncoder(world["encoder"]))


def _args(world, *extra):
    return ["--index", f"tiny={world['index']}", "--corpus", f"tiny={world['corpus']}", "--encoder", world["encoder"],
            *extra]


@pytest.fixture(scope="module")
def rest(world):
    server = Server("pyserini_hypencoder.server.rest",
                    _args(world, "--batch-wait-ms", 30, "--batch-wait-always", "--max-hits", 50),
                    world["root"] / "rest.log")
    try:
        yield server
    finally:
        server.stop()


def _post(client, url, body, **kw):
    return client.post(url, content=body if isinstance(body, (bytes, str)) else json.dumps(body),
                       headers={"content-type": "application/json"}, **kw)


def test_answers_equal_the_searcher_and_concurrent_queries_share_batches(rest, searcher, world):
    with httpx.Client(base_url=rest.url, timeout=30) as client:
        before = client.get("/v1/health").json()
        with ThreadPoolExecutor(len(QUERIES)) as pool:
            answers = list(pool.map(lambda q: _post(client, "/v1/indexes/tiny/search", {"query": q, "hits": 7,
                                                                                         "qid": "q1"}), QUERIES))
        after = client.get("/v1/health").json()
    for query, response in zip(QUERIES, answers):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["query"] == {"qid": "q1", "query_txt": query, "query_img_path": None, "query_modality": "text",
                                 "fp16": False}
        expected = searcher.search(query, k=7)
        assert [(c["docid"], c["score"]) for c in body["candidates"]] == [(h.docid, h.score) for h in expected]
        for c in body["candidates"]:
            doc = world["docs"][c["docid"]]
            assert c["document_txt"] == f"{doc['title']} {doc['text']}"
    batches, queries = after["batches"] - before["batches"], after["queries"] - before["queries"]
    assert queries == len(QUERIES) and batches < queries      # some shared a batch


def test_pyserini_2x_routes(rest, searcher, world):
    with httpx.Client(base_url=rest.url, timeout=30) as client:
        body = client.get("/v1/tiny/search", params={"query": QUERIES[0], "hits": 3}).json()
        assert body["api"] == "v1" and body["index"] == "tiny" and body["query"] == {"text": QUERIES[0]}
        expected = searcher.search(QUERIES[0], k=3)
        assert [(c["docid"], c["score"], c["rank"]) for c in body["candidates"]] == \
            [(h.docid, h.score, r) for r, h in enumerate(expected, 1)]
        first = world["docs"][expected[0].docid]
        assert body["candidates"][0]["doc"] == {"title": first["title"], "text": first["text"],
                                                "metadata": first["metadata"]}
        raw = client.get("/v1/tiny/search", params={"query": QUERIES[0], "hits": 1, "parse": "false"}).json()
        assert json.loads(raw["candidates"][0]["doc"]) == first
        cut = client.get("/v1/tiny/search", params={"query": QUERIES[0], "hits": 1, "max_doc_length": 4}).json()
        assert cut["candidates"][0]["doc"]["text"] == first["text"][:4]
        doc = client.get("/v1/tiny/doc/D5").json()
        assert doc == {"api": "v1", "index": "tiny", "docid": "D5",
                       "doc": {k: v for k, v in world["docs"]["D5"].items() if k != "_id"}}
        assert client.get("/v1/tiny/search", params={"query": "x", "block_size": 9}).status_code == 200


def test_pyserini_16_routes_documents_status_list_settings(rest, world):
    with httpx.Client(base_url=rest.url, timeout=30) as client:
        doc = client.get("/v1/indexes/tiny/documents/D3").json()
        d3 = world["docs"]["D3"]
        assert doc == {"_id": "D3", "title": d3["title"], "text": d3["text"], "metadata": json.dumps(d3["metadata"]),
                       "contents": f"{d3['title']} {d3['text']}"}
        status = client.get("/v1/indexes/tiny/status").json()
        assert status["downloaded"] is True and int(status["size_bytes"]) > 0 and status["num_docs"] == 40
        assert status["strategy"] == "exact"
        assert client.get("/v1/indexes/", params={"index_type": "hypencoder"}).json() == ["tiny"]
        assert client.get("/v1/indexes/", params={"index_type": "tf"}).json() == []
        assert client.get("/v1/indexes/tiny/settings").json() == {"efSearch": None, "encoder": world["encoder"],
                                                                  "queryGenerator": None}
        assert _post(client, "/v1/indexes/tiny/settings", {"encoder": world["encoder"]}).json() == {"status": "success"}
        assert _post(client, "/v1/indexes/tiny/settings", {"efSearch": "100"}).status_code == 400
        health = client.get("/v1/health").json()
        assert health["status"] == "ok" and health["indexes"] == ["tiny"]
        root = client.get("/").json()
        assert root["version"] == "v1" and root["documentation"] == "/docs"


BAD = [  # (what, method, path, body, status, words in the detail)
    ("malformed JSON", "post", "/v1/indexes/tiny/search", b'{"query": "x",', 422, "malformed JSON"),
    ("not an object", "post", "/v1/indexes/tiny/search", b"[1, 2]", 422, "dictionary"),
    ("missing query", "post", "/v1/indexes/tiny/search", {"hits": 3}, 422, "query: Field required"),
    ("empty query", "post", "/v1/indexes/tiny/search", {"query": "  "}, 400, "query is empty"),
    ("empty query text", "post", "/v1/indexes/tiny/search", {"query": {"query_txt": ""}}, 400, "query"),
    ("image query", "post", "/v1/indexes/tiny/search", {"query": {"query_img_path": "x.png"}}, 400, "query_img_path"),
    ("query of a wrong type", "post", "/v1/indexes/tiny/search", {"query": 5}, 422, "valid string"),
    ("hits 0", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": 0}, 400, "between 1 and 50"),
    ("hits negative", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": -3}, 400, "between 1 and 50"),
    ("hits over the limit", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": 51}, 400, "between 1 and 50"),
    ("hits a word", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": "ten"}, 422, "hits"),
    ("hits a boolean", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": True}, 422, "boolean"),
    ("hits a fraction", "post", "/v1/indexes/tiny/search", {"query": "x", "hits": 2.5}, 422, "hits"),
    ("unknown strategy parameter", "post", "/v1/indexes/tiny/search", {"query": "x", "candidates": 10}, 400,
     "unknown exact search parameter 'candidates'"),
    ("strategy parameter of a wrong type", "post", "/v1/indexes/tiny/search", {"query": "x", "block_size": "big"},
     400, "expects int"),
    ("strategy parameter too small", "post", "/v1/indexes/tiny/search", {"query": "x", "block_size": 0}, 400,
     "at least 1"),
    ("Lucene-only option", "post", "/v1/indexes/tiny/search", {"query": "x", "ef_search": 100}, 400, "ef_search"),
    ("another encoder", "post", "/v1/indexes/tiny/search", {"query": "x", "encoder": "bge"}, 400, "--encoder"),
    ("qid of a wrong type", "post", "/v1/indexes/tiny/search", {"query": "x", "qid": [1]}, 422, "qid"),
    ("invalid UTF-8", "post", "/v1/indexes/tiny/search", b'{"query": "\xff\xfe caf\xe9"}', 400, "parsing the body"),
    ("body too large", "post", "/v1/indexes/tiny/search", b'{"query": "' + b"a" * (1 << 20) + b'"}', 413, "over"),
    ("unknown index", "post", "/v1/indexes/nope/search", {"query": "x"}, 404, "index 'nope' not found"),
    ("unknown docid", "get", "/v1/indexes/tiny/documents/NOPE", None, 404, "document 'NOPE' not found"),
    ("unknown index (status)", "get", "/v1/indexes/nope/status", None, 404, "not found"),
    ("unknown index type", "get", "/v1/indexes/?index_type=graph", None, 400, "index_type"),
    ("2.x: no query", "get", "/v1/tiny/search?hits=3", None, 400, "'query' is required"),
    ("2.x: hits a word", "get", "/v1/tiny/search?query=x&hits=ten", None, 400, "'hits' must be an integer"),
    ("2.x: hits 0", "get", "/v1/tiny/search?query=x&hits=0", None, 400, "positive"),
    ("2.x: hits over the limit", "get", "/v1/tiny/search?query=x&hits=51", None, 400, "between 1 and 50"),
    ("2.x: parse a word", "get", "/v1/tiny/search?query=x&parse=maybe", None, 400, "'parse'"),
    ("2.x: BM25 parameters", "get", "/v1/tiny/search?query=x&k1=0.9&b=0.4", None, 400, "BM25"),
    ("2.x: unknown parameter", "get", "/v1/tiny/search?query=x&nprobe=4", None, 400, "'nprobe'"),
    ("2.x: unknown index", "get", "/v1/nope/search?query=x", None, 404, "not found"),
    ("2.x: unknown docid", "get", "/v1/tiny/doc/NOPE", None, 404, "not found"),
    ("no such route", "get", "/v2/whatever", None, 404, "Not Found"),
    ("wrong method", "delete", "/v1/indexes/tiny/search", None, 405, "Method Not Allowed"),
]


@pytest.mark.parametrize("what,method,path,body,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_a_4xx_with_a_json_detail(rest, what, method, path, body, status, words):
    with httpx.Client(base_url=rest.url, timeout=30) as client:
        if method == "post":
            response = _post(client, path, body)
        else:
            response = client.request(method.upper(), path)
        assert response.status_code == status, response.text
        detail = response.json()
        assert words in detail["detail"] and detail["error"] == detail["detail"]
        assert client.get("/v1/health").status_code == 200           # still serving


def test_an_over_long_query_is_truncated_as_the_cli_does(rest, searcher):
    query = "cancer risk " * 20000                                      # 240 kB, far past the encoder's 64 tokens
    with httpx.Client(base_url=rest.url, timeout=60) as client:
        response = _post(client, "/v1/indexes/tiny/search", {"query": query, "hits": 5})
    assert response.status_code == 200, response.text
    assert [(c["docid"], c["score"]) for c in response.json()["candidates"]] == \
        [(h.docid, h.score) for h in searcher.search(query, k=5)]


def test_a_client_written_for_pyserinis_rest_server_works_unchanged(rest):
    """docs/examples/pyserini_rest_client.py speaks Pyserini's REST API only (1.6's and 2.x's routes)."""
    out = subprocess.run([sys.executable, str(EXAMPLE), rest.url, "tiny", "cancer risk in patients"],
                         capture_output=True, text=True, timeout=60, env=_env())
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("1.6 route: 3 hits") and lines[-1].startswith("2.x route: 3 hits")
    assert any(line.startswith("document ") for line in lines)


def test_the_index_is_only_read(rest, world):
    after = sorted((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in Path(world["index"]).rglob("*"))
    assert after == world["before"]


def test_a_full_queue_is_a_503_with_retry_after_and_a_late_answer_a_504(world):
    """Queries wait 1.5 s for batch mates; the queue holds 2; a request waits 0.8 s at most."""
    server = Server("pyserini_hypencoder.server.rest",
                    _args(world, "--batch-wait-ms", 1500, "--batch-wait-always", "--max-queue", 2,
                          "--timeout", 0.8),
                    world["root"] / "limits.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            with ThreadPoolExecutor(2) as pool:
                waiting = [pool.submit(_post, client, "/v1/indexes/tiny/search", {"query": q}) for q in QUERIES[:2]]
                deadline = time.monotonic() + 10
                while client.get("/v1/health").json()["queued"] < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
                full = _post(client, "/v1/indexes/tiny/search", {"query": "one too many"})
                late = [f.result(timeout=30) for f in waiting]
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            assert "queue is full" in full.json()["detail"]
            assert [r.status_code for r in late] == [504, 504] and "no answer within 0.8 s" in late[0].json()["detail"]
            assert client.get("/v1/health").status_code == 200      # still serving
    finally:
        assert server.stop() == 0


def test_sigterm_answers_the_requests_in_flight_and_exits_0(world, searcher):
    server = Server("pyserini_hypencoder.server.rest", _args(world, "--batch-wait-ms", 1500, "--batch-wait-always"),
                    world["root"] / "sigterm.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            with ThreadPoolExecutor(4) as pool:
                flying = [pool.submit(_post, client, "/v1/indexes/tiny/search", {"query": q, "hits": 3})
                          for q in QUERIES[:4]]
                deadline = time.monotonic() + 10
                while client.get("/v1/health").json()["queued"] < 4 and time.monotonic() < deadline:
                    time.sleep(0.01)
                server.proc.send_signal(signal.SIGTERM)
                answers = [f.result(timeout=30) for f in flying]
        assert [a.status_code for a in answers] == [200] * 4
        for query, answer in zip(QUERIES, answers):
            assert [c["docid"] for c in answer.json()["candidates"]] == [h.docid for h in searcher.search(query, k=3)]
        assert server.proc.wait(timeout=30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/v1/health", timeout=2)       # no longer listening
        assert "stopping (SIGTERM)" in server.log.read_text()
    finally:
        server.stop()


def test_a_port_in_use_is_one_line_and_exit_1(world, rest):
    port = rest.url.rsplit(":", 1)[1]
    out = subprocess.run([sys.executable, "-m", "pyserini_hypencoder.server.rest", *_args(world), "--port", port,
                          "--quiet"], capture_output=True, text=True, timeout=120, env=_env())
    assert out.returncode == 1 and "did not start" in out.stderr and "Traceback" not in out.stderr


# -- MCP ---------------------------------------------------------------------------------------------------------
async def _mcp_session(transport, searcher, world):
    from fastmcp import Client
    async with Client(transport, timeout=60) as client:
        names = {tool.name for tool in await client.list_tools()}
        assert {"search", "get_document", "list_indexes", "get_index"} <= names
        result = await client.call_tool("search", {"query": QUERIES[0], "index": "tiny", "hits": 3})
        lines = json.loads(result.content[0].text) if len(result.content) == 1 else [c.text for c in result.content]
        expected = searcher.search(QUERIES[0], k=3)
        assert lines[0] == f"Query Results for: {QUERIES[0]}"
        assert [line for line in lines if isinstance(line, str) and line.startswith("DocID:")] == \
            [f"DocID: {h.docid} | Score: {h.score}" for h in expected]
        old = await client.call_tool("search", {"query": {"query_txt": QUERIES[1]}, "index_name": "tiny", "k": 2})
        assert old.data is not None or old.content
        doc = await client.call_tool("get_document", {"docid": "D3", "index": "tiny"})
        assert "title" in doc.content[0].text and world["docs"]["D3"]["text"] in doc.content[0].text
        assert (await client.call_tool("list_indexes", {"index_type": "hypencoder"})).data == ["tiny"]
        assert (await client.call_tool("get_index", {"index_name": "tiny"})).data["num_docs"] == 40
        bad = await client.call_tool("search", {"query": " ", "index": "tiny"}, raise_on_error=False)
        assert bad.is_error and "query is empty" in bad.content[0].text
        bad = await client.call_tool("search", {"query": "x", "index": "nope"}, raise_on_error=False)
        assert bad.is_error and "not found" in bad.content[0].text
        bad = await client.call_tool("search", {"query": "x", "search_params": {"nprobe": 2}}, raise_on_error=False)
        assert bad.is_error and "nprobe" in bad.content[0].text


def test_mcp_over_streamable_http(world, searcher):
    server = Server("pyserini_hypencoder.server.mcp", _args(world, "--transport", "http"), world["root"] / "mcp.log")
    try:
        asyncio.run(_mcp_session(server.url + "/mcp", searcher, world))
    finally:
        assert server.stop() == 0


def test_mcp_over_stdio(world, searcher):
    from fastmcp.client.transports import StdioTransport
    transport = StdioTransport(command=sys.executable, env=_env(), cwd=str(world["root"]),
                               args=["-m", "pyserini_hypencoder.server.mcp", *_args(world), "--quiet", "--threads",
                                     str(torch.get_num_threads())])
    asyncio.run(_mcp_session(transport, searcher, world))


def test_bench_server_runs_and_reports_the_goals(world, tmp_path):
    """benchmarks/bench_server.py end to end on the tiny index (a few requests per level)."""
    topics = tmp_path / "topics.tsv"
    topics.write_text("".join(f"{i}\t{q}\n" for i, q in enumerate(QUERIES)), encoding="utf-8")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_server.py"), "--index",
                          str(world["index"]), "--encoder", world["encoder"], "--topics", str(topics), "--threads",
                          str(torch.get_num_threads()), "--concurrency", "1,8,32", "--requests", "24", "--seconds", "5",
                          "--check", "6",
                          "--memory-seconds", "2", "--json", str(tmp_path / "b.json")],
                         capture_output=True, text=True, timeout=300, env=_env())
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["concurrency"] for r in report["levels"]] == [1, 8, 32]
    assert report["answers_different"] == 0 and report["answers_compared"] == 6
    assert report["goals"]["errors"] == 0 and report["server_exit"] == 0
    assert "c=32 throughput / batch_search throughput" in out.stdout and report["memory_run"]["samples"] >= 2
