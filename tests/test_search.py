"""HypencoderSearcher and exact search on synthetic q-nets and vectors: results equal brute-force scoring."""
import hashlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pyserini.search.faiss import DenseSearchResult

from pyserini_hypencoder.index import IndexMismatchError, write_index
from pyserini_hypencoder.model.qnet import QNetBatch, QNetSpec
from pyserini_hypencoder.search import HypencoderSearcher, exact_search

DIM = 16
SPEC = QNetSpec((DIM, DIM, DIM, 1))


def random_qnets(seeds, spec=SPEC) -> QNetBatch:
    weights, biases = [], []
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    dims = spec.vector_dimensions
    for j in range(len(dims) - 1):
        weights.append(torch.stack([torch.randn(dims[j], dims[j + 1], generator=g) / dims[j] ** 0.5 for g in gens]))
        if j < len(dims) - 2:
            biases.append(torch.stack([torch.randn(1, dims[j + 1], generator=g) * 0.1 for g in gens]))
    return QNetBatch(weights, biases, spec)


class FakeQueryEncoder:
    """A query encoder without a transformer: each query text seeds its own random q-net."""

    encoder_name = "fake-encoder"

    def __init__(self, fingerprint="f00d", spec=SPEC):
        self.fingerprint = fingerprint
        self.spec = spec
        self.model = SimpleNamespace(spec=spec)

    def encode_batch(self, queries):
        if any(not q.strip() for q in queries):
            raise ValueError("empty query text")
        return random_qnets([int(hashlib.md5(q.encode()).hexdigest()[:8], 16) for q in queries], self.spec)

    def encode(self, query):
        return self.encode_batch([query])


def make_index(path, vectors, docids=None, fingerprint="f00d"):
    docids = docids or [f"doc{i:03d}" for i in range(len(vectors))]
    meta = {"encoder": "fake-encoder", "encoder_fingerprint": fingerprint, "pooling": "cls", "max_length": 32,
            "bf16": False}
    return write_index(path, docids, np.asarray(vectors, dtype=np.float32), meta)


def brute_force(encoder, query, vectors, docids, k):
    scores = encoder.encode(query).score(torch.from_numpy(np.asarray(vectors, dtype=np.float32)))[0].tolist()
    return sorted(zip(docids, scores), key=lambda h: (-h[1], h[0]))[:k]


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    return rng.standard_normal((300, DIM)).astype(np.float32)


@pytest.fixture()
def index_dir(tmp_path, corpus):
    return make_index(tmp_path / "idx", corpus)


def test_exact_search_matches_brute_force_over_blocks(corpus):
    qnets = random_qnets([1, 2, 3])
    full = qnets.score(torch.from_numpy(corpus))
    for block in (7, 64, 1000):
        scores, rows = exact_search(qnets, corpus, 10, block_size=block)
        assert rows.shape == (3, 10)
        top, idx = torch.topk(full, 10, dim=1)
        assert torch.equal(rows, idx) and torch.allclose(scores, top)


def test_search_equals_brute_force(index_dir, corpus):
    encoder = FakeQueryEncoder()
    searcher = HypencoderSearcher(index_dir, encoder, search_params={"block_size": 50})
    docids = [f"doc{i:03d}" for i in range(len(corpus))]
    hits = searcher.search("what is a q-net", k=25)
    assert all(isinstance(h, DenseSearchResult) for h in hits)
    expected = brute_force(encoder, "what is a q-net", corpus, docids, 25)
    assert [h.docid for h in hits] == [d for d, _ in expected]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], rtol=1e-5, atol=1e-6)


def test_batch_search_equals_single_searches(index_dir):
    searcher = HypencoderSearcher(index_dir, FakeQueryEncoder())
    queries = [f"query number {i}" for i in range(70)]  # more than one internal chunk
    batch = searcher.batch_search(queries, [str(i) for i in range(70)], k=5, threads=2)
    assert list(batch) == [str(i) for i in range(70)]
    for i in (0, 33, 69):
        single = searcher.search(queries[i], k=5)
        assert [h.docid for h in batch[str(i)]] == [h.docid for h in single]


def test_k_larger_than_corpus(index_dir, corpus):
    hits = HypencoderSearcher(index_dir, FakeQueryEncoder()).search("q", k=10_000)
    assert len(hits) == len(corpus) and len({h.docid for h in hits}) == len(corpus)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)


def test_ties_ordered_by_docid_across_the_cut(tmp_path):
    rng = np.random.default_rng(3)
    same = rng.standard_normal(DIM).astype(np.float32)
    vectors = np.stack([same] * 40 + [rng.standard_normal(DIM).astype(np.float32) * 0.01 for _ in range(5)])
    docids = [f"t{i:02d}" for i in rng.permutation(40)] + [f"o{i}" for i in range(5)]
    encoder = FakeQueryEncoder()
    top_score = float(encoder.encode("tie").score(torch.from_numpy(same[None]))[0, 0])
    others = encoder.encode("tie").score(torch.from_numpy(vectors[40:]))[0]
    assert bool((others < top_score).all()), "the synthetic tie must be the best score"
    searcher = HypencoderSearcher(make_index(tmp_path / "ties", vectors, docids), encoder,
                                  search_params={"block_size": 8})
    hits = searcher.search("tie", k=12)
    assert [h.docid for h in hits] == [f"t{i:02d}" for i in range(12)]
    assert len({h.score for h in hits}) == 1


@pytest.mark.parametrize("block_size", [3, 5, 7, 64])
def test_duplicate_documents_tie_whatever_block_they_fall_in(tmp_path, block_size):
    """Identical vectors in different blocks can score a few ulps apart; the run orders them as it prints them
    (6 decimals), so by docid, and the result does not depend on --block-size."""
    rng = np.random.default_rng(3)
    same = rng.standard_normal(64).astype(np.float32)
    vectors = np.stack([same] * 20 + [rng.standard_normal(64).astype(np.float32) * 0.01 for _ in range(5)])
    docids = [f"t{i:02d}" for i in range(20)] + [f"o{i}" for i in range(5)]
    encoder = FakeQueryEncoder(spec=QNetSpec((64, 64, 1)))
    searcher = HypencoderSearcher(make_index(tmp_path / "dup", vectors, docids), encoder,
                                  search_params={"block_size": block_size})
    assert [h.docid for h in searcher.search("tie", k=5)] == ["t00", "t01", "t02", "t03", "t04"]


def test_one_document_corpus(tmp_path):
    searcher = HypencoderSearcher(make_index(tmp_path / "one", np.ones((1, DIM))), FakeQueryEncoder())
    hits = searcher.search("anything", k=10)
    assert [h.docid for h in hits] == ["doc000"]
    assert searcher.batch_search(["a", "b"], ["1", "2"], k=3).keys() == {"1", "2"}


def test_fingerprint_mismatch_refused_unless_forced(tmp_path, corpus):
    path = make_index(tmp_path / "other", corpus[:20], fingerprint="beef")
    with pytest.raises(IndexMismatchError) as err:
        HypencoderSearcher(path, FakeQueryEncoder(fingerprint="f00d"))
    assert "beef" in str(err.value) and "f00d" in str(err.value) and "fake-encoder" in str(err.value)
    hits = HypencoderSearcher(path, FakeQueryEncoder(fingerprint="f00d"), force=True).search("q", k=3)
    assert len(hits) == 3


def test_dimension_mismatch_is_an_error_even_when_forced(tmp_path):
    path = make_index(tmp_path / "wide", np.zeros((3, DIM * 2)))
    for force in (False, True):
        with pytest.raises(ValueError, match="32-d .* 16-d"):
            HypencoderSearcher(path, FakeQueryEncoder(), force=force)


def test_bad_arguments(index_dir):
    searcher = HypencoderSearcher(index_dir, FakeQueryEncoder())
    for k in (0, -1):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            searcher.search("q", k=k)
    with pytest.raises(ValueError, match="empty query"):
        searcher.search("  ")
    with pytest.raises(ValueError, match="2 queries but 1 query ids"):
        searcher.batch_search(["a", "b"], ["1"])
    with pytest.raises(ValueError, match="unknown search strategy 'hnsw'; expected one of exact, graph, ivf, surrogate"):
        HypencoderSearcher(index_dir, FakeQueryEncoder(), strategy="hnsw")
    with pytest.raises(ValueError, match="unknown surrogate search parameter 'n_probe'"):
        HypencoderSearcher(index_dir, FakeQueryEncoder(), strategy="surrogate", search_params={"n_probe": 3})
    with pytest.raises(ValueError, match="'candidates' must be at least 1, got 0"):
        HypencoderSearcher(index_dir, FakeQueryEncoder(), strategy="surrogate", search_params={"candidates": 0})


def test_deprecated_keywords_still_work(index_dir):
    """``search=`` (the old name of ``strategy=``) and ``block_size=`` warn and mean what they meant."""
    with pytest.warns(DeprecationWarning, match="strategy="):
        old = HypencoderSearcher(index_dir, FakeQueryEncoder(), search="surrogate")
    assert old.strategy.name == "surrogate"
    with pytest.warns(DeprecationWarning, match="block_size"):
        blocked = HypencoderSearcher(index_dir, FakeQueryEncoder(), block_size=7)
    assert blocked.search_params == {"block_size": 7}
    # the same computation as the current spelling, bit for bit; the block shape itself may move a float32 sum by
    # an ulp (GEMM blocking), so the default block size is compared on docids and to 1e-5
    current = HypencoderSearcher(index_dir, FakeQueryEncoder(), search_params={"block_size": 7})
    hits = [(h.docid, h.score) for h in blocked.search("a query", k=5)]
    assert hits == [(h.docid, h.score) for h in current.search("a query", k=5)]
    plain = [(h.docid, h.score) for h in HypencoderSearcher(index_dir, FakeQueryEncoder()).search("a query", k=5)]
    assert [d for d, _ in hits] == [d for d, _ in plain]
    assert max(abs(a - b) for (_, a), (_, b) in zip(hits, plain)) < 1e-5


def test_missing_index_files(tmp_path, corpus):
    path = make_index(tmp_path / "broken", corpus[:5])
    (path / "docid").unlink()
    with pytest.raises(ValueError, match="docid"):
        HypencoderSearcher(path, FakeQueryEncoder())
    with pytest.raises(ValueError, match="no such index directory"):
        HypencoderSearcher(tmp_path / "absent", FakeQueryEncoder())


def test_pre_encoded_qnets(index_dir, corpus):
    encoder = FakeQueryEncoder()
    searcher = HypencoderSearcher(index_dir, encoder)
    assert [h.docid for h in searcher.search(encoder.encode("pre"), k=5)] == \
        [h.docid for h in searcher.search("pre", k=5)]


def test_return_vector_gives_the_qnets_and_each_hits_document_vector(index_dir, corpus):
    """Pyserini's ``return_vector=True``: (query side, hits with vectors); same hits as a plain search."""
    encoder = FakeQueryEncoder()
    searcher = HypencoderSearcher(index_dir, encoder)
    row = {f"doc{i:03d}": i for i in range(len(corpus))}
    qnets, hits = searcher.search("vector please", k=7, return_vector=True)
    assert isinstance(qnets, QNetBatch) and len(qnets) == 1
    assert [(h.docid, h.score) for h in hits] == [(h.docid, h.score) for h in searcher.search("vector please", k=7)]
    for h in hits:
        np.testing.assert_array_equal(h.vectors, corpus[row[h.docid]])
    np.testing.assert_allclose(qnets.score(torch.from_numpy(corpus[[row[h.docid] for h in hits]]))[0].tolist(),
                               [h.score for h in hits], rtol=1e-5, atol=1e-6)
    queries = [f"query {i}" for i in range(70)]   # two internal chunks: q-nets come back in query order
    all_qnets, batch = searcher.batch_search(queries, [str(i) for i in range(70)], k=3, return_vector=True)
    assert len(all_qnets) == 70 and list(batch) == [str(i) for i in range(70)]
    expected = encoder.encode(queries[66]).score(torch.from_numpy(corpus))[0]
    np.testing.assert_allclose(all_qnets.score(torch.from_numpy(corpus))[66], expected, rtol=1e-5, atol=1e-6)
    assert [h.docid for h in batch["66"]] == [h.docid for h in searcher.search(queries[66], k=3)]
    np.testing.assert_array_equal(batch["66"][0].vectors, corpus[row[batch["66"][0].docid]])
    assert searcher.search("q", k=4, remove_dups=True) == searcher.search("q", k=4)
