"""The servers' parts in-process: bad flags; the request batcher (server/batcher.py): batches form within the wait
and up to the size, by key,
a full queue refuses at once, a caller that gave up is skipped, one failing item fails only itself; and the
service's batches give each query the hits it gets alone (exact search, ties at the cut included)."""
import threading
import time

import numpy as np
import pytest

from pyserini_hypencoder.server.batcher import Batcher, Overloaded


def drain(batcher, rounds=20):
    ran = []
    for _ in range(rounds):
        ran.append(batcher.run_once(timeout=0.01))
    return [n for n in ran if n]


def test_jobs_that_arrive_together_run_as_one_batch_in_order():
    seen = []
    batcher = Batcher(lambda key, items: (seen.append((key, list(items))), [x * 10 for x in items])[1],
                      max_batch=4, max_wait=0.05)
    futures = [batcher.submit("a", i) for i in range(6)]
    assert drain(batcher) == [4, 2]
    assert seen == [("a", [0, 1, 2, 3]), ("a", [4, 5])]
    assert [f.result(0) for f in futures] == [0, 10, 20, 30, 40, 50]
    assert batcher.stats()["batches"] == 2 and batcher.stats()["mean_batch"] == 3.0 and batcher.largest == 4


def test_keys_never_share_a_batch_and_the_oldest_goes_first():
    seen = []
    batcher = Batcher(lambda key, items: (seen.append((key, list(items))), list(items))[1], max_batch=8, max_wait=0)
    for key, item in (("x", 1), ("y", 2), ("x", 3), ("y", 4)):
        batcher.submit(key, item)
    drain(batcher)
    assert seen == [("x", [1, 3]), ("y", [2, 4])]


def test_the_wait_is_bounded_and_a_full_batch_does_not_wait():
    batcher = Batcher(lambda key, items: list(items), max_batch=2, max_wait=5.0)
    batcher.submit("k", 1), batcher.submit("k", 2)
    started = time.monotonic()
    assert batcher.run_once(timeout=0.01) == 2
    assert time.monotonic() - started < 1.0          # full: no 5 s wait
    batcher = Batcher(lambda key, items: list(items), max_batch=64, max_wait=0.05)
    batcher.submit("k", 1)
    started = time.monotonic()
    assert batcher.run_once(timeout=0.01) == 1
    assert time.monotonic() - started < 0.04           # idle: a lone query runs at once
    batcher.submit("k", 2), batcher.submit("k", 3)
    assert batcher.run_once(timeout=0.01) == 2          # two waiting: busy
    batcher.submit("k", 4)
    started = time.monotonic()
    assert batcher.run_once(timeout=0.01) == 1
    assert 0.04 <= time.monotonic() - started < 1.0    # after a batch of 2: waits max_wait for mates, then runs
    batcher = Batcher(lambda key, items: list(items), max_batch=64, max_wait=0.05, wait_when_idle=True)
    batcher.submit("k", 1)
    started = time.monotonic()
    assert batcher.run_once(timeout=0.01) == 1
    assert 0.04 <= time.monotonic() - started < 1.0    # wait_when_idle: always waits


def test_a_full_queue_refuses_at_once_and_a_closed_one_refuses_everything():
    batcher = Batcher(lambda key, items: list(items), max_queue=2)
    batcher.submit("k", 1), batcher.submit("k", 2)
    with pytest.raises(Overloaded, match="queue is full"):
        batcher.submit("k", 3)
    batcher.close()
    with pytest.raises(Overloaded, match="shutting down"):
        batcher.submit("k", 4)
    assert sum(drain(batcher)) == 2                   # what was queued still runs


def test_a_caller_that_gave_up_is_skipped_and_one_bad_item_fails_alone():
    calls = []

    def run(key, items):
        calls.append(list(items))
        return [ValueError(f"bad {x}") if x < 0 else x for x in items]
    batcher = Batcher(run, max_batch=8, max_wait=0)
    gone, bad, good = batcher.submit("k", 1), batcher.submit("k", -1), batcher.submit("k", 2)
    gone.cancel()
    drain(batcher)
    assert calls == [[-1, 2]]
    with pytest.raises(ValueError, match="bad -1"):
        bad.result(0)
    assert good.result(0) == 2


def test_a_batch_that_raises_fails_its_callers_and_the_worker_goes_on():
    state = {"fail": True}

    def run(key, items):
        if state.pop("fail", False):
            raise RuntimeError("boom")
        return list(items)
    batcher = Batcher(run, max_wait=0)
    first = batcher.submit("k", 1)
    drain(batcher)
    with pytest.raises(RuntimeError, match="boom"):
        first.result(0)
    second = batcher.submit("k", 2)
    drain(batcher)
    assert second.result(0) == 2


def test_submitting_from_many_threads_while_the_worker_runs():
    batcher = Batcher(lambda key, items: [x + 1 for x in items], max_batch=16, max_wait=0.002, max_queue=10_000)
    futures, lock = [], threading.Lock()

    def client(base):
        for i in range(50):
            f = batcher.submit("k", base + i)
            with lock:
                futures.append((base + i, f))
    threads = [threading.Thread(target=client, args=(1000 * t,)) for t in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while (any(t.is_alive() for t in threads) or batcher.queued) and time.monotonic() < deadline:
        batcher.run_once(timeout=0.01)
    assert len(futures) == 200 and all(f.result(0) == x + 1 for x, f in futures)


# -- the service's batches against single searches -----------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, parity_dir):
    from pyserini_hypencoder.encoders import HypencoderDocumentEncoder, HypencoderQueryEncoder
    from pyserini_hypencoder.index import write_index
    from pyserini_hypencoder.search import HypencoderSearcher
    from pyserini_hypencoder.server.service import ServedIndex, Service
    rng = np.random.default_rng(5)
    words = "cell protein gene dna cancer risk blood brain virus study".split()
    texts = [" ".join(rng.choice(words, size=8 + i % 5)) for i in range(60)]
    texts[7] = texts[3]                                # two documents that tie on every query
    encoder_dir = str(parity_dir / "checkpoint_bin")
    enc = HypencoderDocumentEncoder(encoder_dir)
    meta = {"encoder": encoder_dir, "encoder_fingerprint": enc.fingerprint, "pooling": "cls",
            "max_length": enc.max_length, "bf16": False}
    index = write_index(tmp_path_factory.mktemp("served") / "idx", [f"d{i}" for i in range(60)], enc.encode(texts),
                        meta)
    searcher = HypencoderSearcher(index, HypencoderQueryEncoder(encoder_dir))
    return searcher, Service({"tiny": ServedIndex("tiny", searcher)}, encoder_name=encoder_dir, max_wait=0)


QUERIES = ["cancer risk", "protein gene dna", "brain virus study", "blood", "cell cell cell protein", "risk"]


def test_batched_answers_equal_single_searches_exactly(served):
    searcher, service = served
    alone = {q: [(h.docid, h.score) for h in searcher.search(q, k=k)] for q, k in zip(QUERIES, (3, 10, 1, 60, 7, 5))}
    futures = [service.submit("tiny", q, k) for q, k in zip(QUERIES, (3, 10, 1, 60, 7, 5))]
    assert service.batcher.run_once(timeout=0.1) == len(QUERIES)          # one batch, mixed hits
    for q, f in zip(QUERIES, futures):
        assert f.result(0) == alone[q]                                     # same docids, same float scores
    # the same query in other company: same answer
    for mates in (QUERIES[:2], QUERIES[::-1], [QUERIES[0]] * 5):
        futures = [service.submit("tiny", q, 10) for q in mates]
        service.batcher.run_once(timeout=0.1)
        for q, f in zip(mates, futures):
            assert f.result(0) == [(h.docid, h.score) for h in searcher.search(q, k=10)]


def test_per_request_parameters_are_checked_by_the_strategy_registry(served):
    from pyserini_hypencoder.server.service import BadRequest
    _, service = served
    with pytest.raises(BadRequest, match="unknown exact search parameter 'candidates'"):
        service.submit("tiny", "x", 10, {"candidates": 5})
    with pytest.raises(BadRequest, match="expects int"):
        service.submit("tiny", "x", 10, {"block_size": "many"})
    f = service.submit("tiny", "cancer risk", 5, {"block_size": 7})      # what a searcher with that block size gives
    service.batcher.run_once(timeout=0.1)
    searcher = served[0]
    blocked = type(searcher)(searcher.index, searcher.query_encoder, search_params={"block_size": 7})
    assert f.result(0) == [(h.docid, h.score) for h in blocked.search("cancer risk", k=5)]
    assert service.indexes["tiny"].searcher.search_params == {"block_size": None}   # the served one unchanged
    for hits in (0, -1, 10**6, True, 2.5, "3"):
        with pytest.raises(BadRequest, match="hits"):
            service.submit("tiny", "x", hits)
    for query in ("", "   ", None, 5):
        with pytest.raises(BadRequest, match="query"):
            service.submit("tiny", query, 10)


@pytest.mark.parametrize("argv,words", [
    (["--index", "tiny"], "expected NAME=PATH"),
    (["--index", "indexes=/x"], "index name 'indexes'"),
    (["--index", "a=/nonexistent"], "nonexistent"),
    (["--index", "a=/x", "--corpus", "b=/y"], "no --index b=DIR"),
    (["--index", "a=/x", "--index", "a=/y"], "given twice"),
    (["--index", "a=/x", "--batch-wait-ms", "-1"], "non-negative"),
])
def test_bad_flags_are_one_line_and_exit_2(argv, words, capsys):
    from pyserini_hypencoder.cli import run_cli
    from pyserini_hypencoder.server.rest import main
    try:
        code = run_cli(main, argv, prog="python -m pyserini_hypencoder.server.rest")
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and words in err and "Traceback" not in err
