"""HypencoderReranker on synthetic q-nets and vectors: candidate scores equal direct q-net scores."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pyserini_hypencoder.index import write_index
from pyserini_hypencoder.model.qnet import QNetBatch, QNetSpec
from pyserini_hypencoder.formats import RunEntry
from pyserini_hypencoder.search import HypencoderReranker

DIM = 8
SPEC = QNetSpec((DIM, DIM, 1))


class FakeQueryEncoder:
    encoder_name, fingerprint = "fake", "abc"
    model = SimpleNamespace(spec=SPEC)

    def encode_batch(self, queries):
        nets = []
        for q in queries:
            g = torch.Generator().manual_seed(len(q) * 7919 + sum(map(ord, q)))
            nets.append(QNetBatch([torch.randn(1, DIM, DIM, generator=g), torch.randn(1, DIM, 1, generator=g)],
                                  [torch.randn(1, 1, DIM, generator=g)], SPEC))
        return QNetBatch.concat(nets)


@pytest.fixture()
def setup(tmp_path):
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((12, DIM)).astype(np.float32)
    docids = [f"d{i}" for i in range(12)]
    index = write_index(tmp_path / "idx", docids, vectors, {"encoder": "fake", "encoder_fingerprint": "abc"})
    run = {"q1": [RunEntry(f"d{i}", r + 1, 10.0 - r) for r, i in enumerate([3, 1, 4, 0, 5, 9, 2])],
           "q2": [RunEntry("d7", 1, 1.0), RunEntry("d8", 2, 0.5)],
           "orphan": [RunEntry("d1", 1, 1.0)]}
    return dict(vectors=vectors, docids=docids, index=index, run=run)


def test_scores_are_direct_qnet_scores_and_depth_drops_the_rest(setup):
    enc = FakeQueryEncoder()
    topics = {"q1": "first query", "q2": "second", "q3": "nothing retrieved"}
    out = HypencoderReranker(enc, index=setup["index"]).rerank(topics, setup["run"], depth=5)
    assert list(out) == ["q1", "q2"]  # q3 has no candidates: skipped; "orphan" has no topic: ignored
    assert {d for d, _ in out["q1"]} == {"d3", "d1", "d4", "d0", "d5"}
    for qid in out:
        docs = [d for d, _ in out[qid]]
        rows = [setup["docids"].index(d) for d in docs]
        direct = enc.encode_batch([topics[qid]]).score(torch.from_numpy(setup["vectors"][rows]))[0].tolist()
        np.testing.assert_allclose([s for _, s in out[qid]], direct, rtol=1e-5, atol=1e-6)
        assert [s for _, s in out[qid]] == sorted((s for _, s in out[qid]), reverse=True)


def test_ties_ordered_by_docid(tmp_path):
    same = np.ones((3, DIM), dtype=np.float32)
    index = write_index(tmp_path / "ties", ["z", "a", "m"], same, {"encoder": "fake", "encoder_fingerprint": "abc"})
    run = {"q": [RunEntry("z", 1, 3.0), RunEntry("m", 2, 2.0), RunEntry("a", 3, 1.0)]}
    out = HypencoderReranker(FakeQueryEncoder(), index=index).rerank({"q": "tie"}, run)
    assert [d for d, _ in out["q"]] == ["a", "m", "z"]


def test_unknown_candidates_without_text_source(setup):
    run = {"q1": [RunEntry("d1", 1, 1.0), RunEntry("ghost", 2, 0.5)]}
    with pytest.raises(ValueError, match="not in the index and there is no text source .*ghost"):
        HypencoderReranker(FakeQueryEncoder(), index=setup["index"]).rerank({"q1": "x"}, run)


def test_bad_calls(setup):
    reranker = HypencoderReranker(FakeQueryEncoder(), index=setup["index"])
    with pytest.raises(ValueError, match="depth must be positive"):
        reranker.rerank({"q1": "x"}, setup["run"], depth=0)
    with pytest.raises(ValueError, match="no query of the topics has candidates"):
        reranker.rerank({"other": "x"}, setup["run"])


def test_keep_rest_appends_the_first_stage_tail_below_the_reranked_ones(setup):
    """keep_rest: the top depth are reranked, the rest follow in first-stage order with scores that keep falling,
    so no first-stage document is lost (a rerank's MAP and deep recall were below BM25's by construction)."""
    from pyserini_hypencoder.search.rerank import TAIL_STEP
    topics = {"q1": "first query", "q2": "second"}
    plain = HypencoderReranker(FakeQueryEncoder(), index=setup["index"]).rerank(topics, setup["run"], depth=3)
    kept = HypencoderReranker(FakeQueryEncoder(), index=setup["index"]).rerank(topics, setup["run"], depth=3,
                                                                               keep_rest=True)
    assert kept["q1"][:3] == plain["q1"]
    assert [d for d, _ in kept["q1"][3:]] == ["d0", "d5", "d9", "d2"]     # the first stage's order below depth 3
    scores = [s for _, s in kept["q1"]]
    assert all(a > b for a, b in zip(scores, scores[1:]))
    assert scores[3] == pytest.approx(scores[2] - TAIL_STEP) and scores[-1] == pytest.approx(scores[2] - 4 * TAIL_STEP)
    assert kept["q2"] == plain["q2"]                                      # nothing below the depth
