"""Training losses against the reference implementation's values (expected_losses.json)."""
import json

import pytest
import torch

from pyserini_hypencoder.train import losses
from pyserini_hypencoder.train.losses import batch_losses

TOL = 1e-5


@pytest.fixture(scope="module")
def batch(parity_dir, parity_model):
    exp = json.loads((parity_dir / "expected_losses.json").read_text())
    model = parity_model
    tok = model.tokenizer
    q = tok(exp["query_texts"], padding="longest", truncation=True, max_length=exp["query_max_length"],
            return_tensors="pt")
    p = tok(exp["passage_texts"], padding="longest", truncation=True, max_length=exp["passage_max_length"],
            return_tensors="pt")
    with torch.no_grad():
        states = model.query_states(q["input_ids"], q["attention_mask"])
        items = model.encode_passages(p["input_ids"], p["attention_mask"]).view(3, 4, -1)
    return exp, model, states, q["attention_mask"], items, torch.tensor(exp["labels"])


def test_losses_match_reference(batch):
    exp, model, states, mask, items, labels = batch
    with torch.no_grad():
        out = batch_losses(model, states, mask, items, labels, None, margin_mse_weight=1.0,
                           cross_entropy_weight=1.0, use_in_batch_negatives=True, only_use_first_item=True)
        own = model.qnets_from_states(states, mask).forward(items)
    assert (own - torch.tensor(exp["student_scores_own_items"])).abs().max() < TOL
    assert abs(out["margin_mse"].item() - 4.8787212) < TOL
    assert abs(out["cross_entropy"].item() - 1.0046130) < TOL
    assert abs(out["total"].item() - 5.8833342) < TOL
    for key in ("margin_mse", "cross_entropy", "total"):
        value = exp.get(key, exp.get("losses", {}).get(key))
        if value is not None:
            assert abs(out[key].item() - float(value)) < TOL


def test_one_query_batch(batch):
    """B = 1 must not collapse shapes (the reference's .squeeze() bug): CE over the query's own items."""
    _, model, states, mask, items, labels = batch
    out = batch_losses(model, states[:1], mask[:1], items[:1], labels[:1], None, margin_mse_weight=1.0,
                       cross_entropy_weight=1.0, only_use_first_item=False)
    own = model.qnets_from_states(states[:1], mask[:1]).forward(items[:1]).detach()
    expected_ce = -torch.log_softmax(own[0], 0)[0]
    assert torch.isfinite(out["total"])
    assert abs(out["cross_entropy"].item() - expected_ce.item()) < TOL
    out["total"].backward()   # differentiable end to end
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head.parameters())
    model.zero_grad(set_to_none=True)


def test_loss_helpers_validate():
    with pytest.raises(ValueError):
        losses.margin_mse(torch.zeros(2, 1), torch.zeros(2, 1))
    targets = losses.in_batch_targets(3, 4, only_use_first_item=False)
    assert targets.tolist() == [0, 4, 8]
