"""Parity with the reference implementation on ../shared/fixtures/reference-parity.

Both checkpoint layouts (``pytorch_model.bin`` with two tied backbone copies, ``model.safetensors``
with one) must reproduce expected.json: token ids and masks exactly, passage embeddings and the
4x6 score matrix within 1e-5 in fp32 (the fixture's max lengths, one padded batch per side), and
one-query-at-a-time scores.  bf16 is measured against the fp32 reference and bounded.
Run with ``-s`` to see the measured errors (also in docs/model.md).
"""
import json

import numpy as np
import pytest
import torch

from pyserini_hypencoder.encoders import HypencoderDocumentEncoder, HypencoderQueryEncoder
from pyserini_hypencoder.model import Hypencoder, load_hypencoder

VARIANTS = ["checkpoint_bin", "checkpoint_safetensors"]
TOL = 1e-5
# bf16 matrix products (backbone, hyper head, q-net) against the fp32 reference; measured max on this
# fixture: see docs/model.md (about 0.05 on scores of magnitude ~1, i.e. a few bf16 ulps of the inputs).
BF16_SCORE_BOUND = 0.15


@pytest.fixture(scope="module")
def expected(parity_dir):
    return json.loads((parity_dir / "expected.json").read_text())


@pytest.fixture(scope="module", params=VARIANTS)
def variant(request, parity_dir, parity_model):
    if request.param == "checkpoint_bin":
        return request.param, parity_model
    return request.param, load_hypencoder(str(parity_dir / request.param))


def _encoders(model: Hypencoder, expected, bf16=False):
    q = HypencoderQueryEncoder(model, max_length=expected["query_max_length"], bf16=bf16)
    d = HypencoderDocumentEncoder(model, max_length=expected["passage_max_length"], bf16=bf16)
    return q, d


def _report(name, what, err):
    print(f"\n[parity] {name}: {what} max abs error {err:.3e}")


def test_loader_infers_shapes_from_state_dict(variant, expected):
    name, model = variant
    info = expected["model"]
    cfg = model.backbone.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads,
            cfg.intermediate_size) == (info["vocab_size"], info["hidden_size"], info["bert_layers"],
                                       info["bert_attention_heads"], info["bert_intermediate_size"])
    assert list(model.spec.vector_dimensions) == info["q_net_vector_dimensions"]
    assert model.shared_encoder and model.passage_encoder() is model.backbone, name


def test_token_ids_and_masks_exact(variant, expected):
    _, model = variant
    tok = model.tokenizer
    q = tok(expected["queries"], padding="longest", truncation=True, max_length=expected["query_max_length"])
    p = tok(expected["passages"], padding="longest", truncation=True, max_length=expected["passage_max_length"])
    assert q["input_ids"] == expected["query_input_ids"]
    assert q["attention_mask"] == expected["query_attention_mask"]
    assert p["input_ids"] == expected["passage_input_ids"]
    assert p["attention_mask"] == expected["passage_attention_mask"]


def test_passage_embeddings_fp32(variant, expected):
    name, model = variant
    _, doc_encoder = _encoders(model, expected)
    emb = doc_encoder.encode(texts=expected["passages"])
    assert emb.dtype == np.float32 and emb.shape == (6, expected["model"]["hidden_size"])
    err = float(np.abs(emb - np.array(expected["passage_embeddings"], dtype=np.float64)).max())
    _report(name, "passage embeddings (6x128)", err)
    assert err <= TOL, f"{name}: passage embeddings differ by {err:.3e} > {TOL}"


def test_score_matrix_fp32(variant, expected):
    name, model = variant
    query_encoder, _ = _encoders(model, expected)
    docs = torch.tensor(expected["passage_embeddings"], dtype=torch.float32)
    scores = query_encoder.encode_batch(expected["queries"]).score(docs)
    assert scores.shape == (4, 6) and scores.dtype == torch.float32
    err = float((scores.double() - torch.tensor(expected["scores"], dtype=torch.float64)).abs().max())
    _report(name, "score matrix (4x6)", err)
    assert err <= TOL, f"{name}: scores differ by {err:.3e} > {TOL}"


def test_end_to_end_scores_from_text(variant, expected):
    """Queries and passages both encoded by this implementation (no reference vectors used)."""
    name, model = variant
    query_encoder, doc_encoder = _encoders(model, expected)
    scores = query_encoder.encode_batch(expected["queries"]).score(doc_encoder.encode(texts=expected["passages"]))
    err = float((scores.double() - torch.tensor(expected["scores"], dtype=torch.float64)).abs().max())
    _report(name, "text -> scores (4x6)", err)
    assert err <= TOL, f"{name}: end-to-end scores differ by {err:.3e}"


def test_single_query_scores(variant, expected):
    name, model = variant
    query_encoder, _ = _encoders(model, expected)
    docs = np.array(expected["passage_embeddings"], dtype=np.float32)
    rows = [query_encoder.encode(q).score(docs)[0] for q in expected["queries"]]
    err = float((torch.stack(rows).double() - torch.tensor(expected["scores_single_query"],
                                                           dtype=torch.float64)).abs().max())
    _report(name, "single-query scores (4x6)", err)
    assert err <= TOL, f"{name}: single-query scores differ by {err:.3e}"


def test_candidate_scoring_matches_matrix(variant, expected):
    _, model = variant
    query_encoder, _ = _encoders(model, expected)
    qnets = query_encoder.encode_batch(expected["queries"])
    docs = torch.tensor(expected["passage_embeddings"], dtype=torch.float32)
    order = torch.tensor([[5, 0, 3], [1, 2, 4], [3, 3, 0], [4, 1, 2]])
    cand = qnets.score_candidates(docs[order])
    full = qnets.score(docs)
    assert cand.shape == (4, 3)
    assert torch.allclose(cand, torch.gather(full, 1, order), atol=1e-6)


def test_bf16_error_is_bounded(variant, expected):
    name, model = variant
    query_encoder, doc_encoder = _encoders(model, expected, bf16=True)
    emb = doc_encoder.encode(texts=expected["passages"])
    qnets = query_encoder.encode_batch(expected["queries"])
    assert qnets.compute_dtype == torch.bfloat16
    ref = torch.tensor(expected["scores"], dtype=torch.float64)
    err_scores = float((qnets.score(emb).double() - ref).abs().max())
    err_ref_docs = float((qnets.score(np.array(expected["passage_embeddings"], dtype=np.float32)).double()
                          - ref).abs().max())
    err_emb = float(np.abs(emb - np.array(expected["passage_embeddings"])).max())
    _report(name, "bf16 text -> scores", err_scores)
    _report(name, "bf16 q-nets on fp32 reference embeddings", err_ref_docs)
    _report(name, "bf16 passage embeddings", err_emb)
    assert 0 < err_scores <= BF16_SCORE_BOUND, (
        f"{name}: bf16 score error {err_scores:.4f} (q-nets on reference embeddings {err_ref_docs:.4f}, "
        f"embeddings {err_emb:.4f}) outside (0, {BF16_SCORE_BOUND}]")
    # bf16 must still rank passages like fp32 on queries whose top passage is clear.
    fp32_top = ref.argmax(1)
    bf16_top = qnets.score(emb).argmax(1)
    margins = ref.sort(1, descending=True).values
    clear = (margins[:, 0] - margins[:, 1]) > 2 * err_scores
    assert torch.equal(fp32_top[clear], bf16_top[clear])
