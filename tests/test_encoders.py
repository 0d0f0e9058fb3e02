"""The Pyserini-style encoders: base classes, shapes, dtypes, titles, bad input."""
import numpy as np
import pytest
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder

from pyserini_hypencoder.encoders import HypencoderDocumentEncoder, HypencoderQueryEncoder, model_fingerprint
from pyserini_hypencoder.formats import join_title
from pyserini_hypencoder.model import QNetBatch, load_hypencoder

TEXTS = ["The capital of France is Paris.", "Retrieval models score documents for a query.",
         "A hypernetwork is a network that produces the weights of another network."]


@pytest.fixture(scope="module")
def model(parity_dir):
    return load_hypencoder(str(parity_dir / "checkpoint_safetensors"))


@pytest.fixture(scope="module")
def encoders(model):
    return HypencoderQueryEncoder(model, max_length=16), HypencoderDocumentEncoder(model, max_length=32)


def test_subclasses_pyserini_encoders(encoders):
    q, d = encoders
    assert isinstance(q, QueryEncoder) and isinstance(d, DocumentEncoder)


def test_accepts_pyserini_cli_kwargs(parity_dir):
    # pyserini's init_query_encoder passes these keywords to every encoder class.
    q = HypencoderQueryEncoder(encoder_dir=str(parity_dir / "checkpoint_bin"), tokenizer_name=None, device="cpu",
                               prefix=None, fp16=False)
    assert isinstance(q.encode("paris"), QNetBatch)


def test_query_encode_shapes(encoders):
    q, _ = encoders
    one = q.encode("what is a hypernetwork")
    assert isinstance(one, QNetBatch) and len(one) == 1
    batch = q.encode_batch(["what is a hypernetwork", "Paris"])
    assert len(batch) == 2
    docs = np.random.default_rng(0).standard_normal((5, 128)).astype(np.float32)
    scores = batch.score(docs)
    assert scores.shape == (2, 5) and scores.dtype == torch.float32 and torch.isfinite(scores).all()
    assert torch.equal(scores, batch.score(torch.from_numpy(docs)))
    assert torch.allclose(batch[1].score(docs)[0], scores[1], atol=1e-6)
    assert batch.score_candidates(np.stack([docs[:3], docs[2:]])).shape == (2, 3)
    assert batch.score(np.zeros((0, 128), np.float32)).shape == (2, 0)


def test_query_encode_bad_input(encoders):
    q, _ = encoders
    with pytest.raises(ValueError):
        q.encode_batch([])
    with pytest.raises(ValueError):
        q.encode("   ")
    with pytest.raises(ValueError):
        q.encode_batch(["paris"]).score(np.zeros((3, 64), np.float32))


def test_document_encode_shapes(encoders):
    _, d = encoders
    vectors = d.encode(texts=TEXTS)
    assert isinstance(vectors, np.ndarray) and vectors.dtype == np.float32 and vectors.shape == (3, d.dimension)
    assert d.dimension == 128
    assert d.encode(texts=[]).shape == (0, 128)
    assert np.isfinite(d.encode(texts=[""])).all()
    # batching does not change a document's vector beyond float noise
    assert np.allclose(d.encode(texts=TEXTS[1:2]), vectors[1:2], atol=1e-5)


def test_titles_are_joined(encoders):
    _, d = encoders
    assert join_title("France", "Paris is the capital.") == "France Paris is the capital."
    assert join_title("", " body ") == "body" and join_title(None, "body") == "body"
    with_titles = d.encode(texts=["Paris is the capital.", "no title here"], titles=["France", ""])
    joined = d.encode(texts=["France Paris is the capital.", "no title here"])
    assert np.array_equal(with_titles, joined)
    assert not np.allclose(with_titles[0], d.encode(texts=["Paris is the capital."])[0])
    with pytest.raises(ValueError):
        d.encode(texts=["a", "b"], titles=["only one"])


def test_max_length_truncates(encoders):
    _, d = encoders
    long_text = " ".join(["hypernetwork"] * 100)
    assert np.array_equal(d.encode(texts=[long_text], max_length=8), d.encode(texts=[" ".join(["hypernetwork"] * 6)],
                                                                              max_length=8))


def test_fingerprint_describes_the_current_weights(parity_dir):
    """Stable for the same weights (also across loads); a model trained or edited after it was fingerprinted gets
    a new fingerprint, equal to a fresh computation, so an index check cannot accept stale weights."""
    model = load_hypencoder(str(parity_dir / "checkpoint_safetensors"))
    q, d = HypencoderQueryEncoder(model), HypencoderDocumentEncoder(model)
    first = model_fingerprint(model)
    assert q.fingerprint == d.fingerprint == first and len(first) == 16
    assert model_fingerprint(load_hypencoder(str(parity_dir / "checkpoint_safetensors"))) == first
    document_side = d.document_fingerprint

    head = model.head.hyper_base_matrices[0]
    optimizer = torch.optim.SGD([head], lr=0.1)
    head.grad = torch.ones_like(head)
    optimizer.step()                                       # a training step on the query side
    stepped = model_fingerprint(model)
    assert stepped != first and stepped == _recomputed(model) == q.fingerprint
    assert d.document_fingerprint == document_side         # the passage side did not change
    with torch.no_grad():
        model.backbone.embeddings.word_embeddings.weight[0, 0] += 1.0   # an in-place edit of the backbone
    edited = model_fingerprint(model)
    assert edited not in (first, stepped) and edited == _recomputed(model)
    assert d.document_fingerprint != document_side
    model.head.hyper_base_vectors[0].data.mul_(2.0)        # through .data, which bypasses version counters
    assert model_fingerprint(model) == _recomputed(model) != edited


def _recomputed(model) -> str:
    """The fingerprint of a copy of the weights, computed afresh (the copy's cached digest removed)."""
    import copy
    clone = copy.deepcopy(model)
    clone.__dict__.pop("_weights_fingerprint", None)
    return model_fingerprint(clone)


@pytest.mark.parametrize("bf16", [False, True])
def test_a_querys_qnet_does_not_depend_on_its_batch_mates(model, bf16):
    """Each query is encoded on its own: alone, or among others of any length, its q-net and scores are the same
    bits (batched padding moved scores at the 5th decimal, and bf16 ones far more)."""
    encoder = HypencoderQueryEncoder(model, max_length=16, bf16=bf16)
    queries = ["what is a hypernetwork", "Paris", "when do concussion symptoms appear in quokkas", "a b c d e f"]
    batch = encoder.encode_batch(queries)
    docs = torch.from_numpy(np.random.default_rng(3).standard_normal((64, 128)).astype(np.float32))
    for i, query in enumerate(queries):
        alone = encoder.encode(query)
        assert all(torch.equal(a, b[i:i + 1]) for a, b in zip(alone.weights + alone.biases,
                                                                batch.weights + batch.biases))
        assert torch.equal(alone.score(docs)[0], batch.score(docs)[i])
    reordered = encoder.encode_batch(queries[::-1] + queries)
    assert torch.equal(reordered.score(docs)[len(queries):], batch.score(docs))
