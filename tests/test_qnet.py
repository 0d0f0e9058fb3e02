"""QNetBatch: the loop-free batched engine and the per-query engine (the default) give the same scores."""
import numpy as np
import pytest
import torch

from pyserini_hypencoder.model import QNetBatch, QNetSpec


def _qnets(dims, q=5, dtype=torch.float32, seed=0, **spec):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(q, dims[i], dims[i + 1], generator=g) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    biases = [torch.randn(q, 1, dims[i + 1], generator=g) * 0.1 for i in range(len(dims) - 2)]
    return QNetBatch(weights, biases, QNetSpec(tuple(dims), **spec), dtype)


@pytest.mark.parametrize("dims,spec", [((16, 16, 16, 1), {}), ((16, 16, 1), {"do_residual_on_last": True}),
                                       ((16, 32, 1), {}), ((16, 16, 16, 1), {"layer_norm_before_residual": False})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_engines_agree(dims, spec, dtype):
    qnets = _qnets(dims, dtype=dtype, **spec)
    docs = np.random.default_rng(1).standard_normal((3000, dims[0])).astype(np.float32)
    batched = qnets.score(docs, engine="batched")
    per_query = qnets.score(docs, engine="per_query")
    assert batched.shape == (5, 3000) and batched.dtype == torch.float32
    assert torch.allclose(batched, per_query, atol=1e-4)
    assert torch.equal(qnets.score(docs), per_query)   # the default engine on a CPU
    assert torch.equal(qnets.with_config(engine="batched").score(docs), batched)
    cands = torch.from_numpy(docs[:700]).expand(5, -1, -1)
    assert torch.allclose(qnets.score_candidates(cands, engine="batched"), batched[:, :700], atol=1e-4)
    assert torch.allclose(qnets.score_candidates(cands), batched[:, :700], atol=1e-4)


def test_scores_match_a_plain_mlp():
    qnets = _qnets((8, 8, 8, 1), q=2)
    docs = torch.randn(50, 8)
    expected = []
    for i in range(2):
        x = docs
        for j in range(2):
            y = torch.nn.functional.layer_norm(torch.relu(x @ qnets.weights[j][i] + qnets.biases[j][i]), (8,))
            x = y + x if j == 0 else y  # residual on every block but the last
        expected.append((x @ qnets.weights[2][i]).squeeze(-1))
    assert torch.allclose(qnets.score(docs), torch.stack(expected), atol=1e-5)


def test_bad_inputs():
    qnets = _qnets((8, 8, 1))
    with pytest.raises(ValueError, match="engine"):
        qnets.score(torch.randn(3, 8), engine="fast")
    with pytest.raises(ValueError, match="shape"):
        qnets.score(torch.randn(3, 7))
    with pytest.raises(ValueError, match="activation"):
        QNetSpec((8, 8, 1), activation="swish")
    assert qnets.score(torch.randn(0, 8)).shape == (len(qnets), 0)


@pytest.mark.parametrize("dims,spec", [((16, 16, 1), {"do_residual_on_last": True}), ((16, 16, 16, 1), {}),
                                       ((16, 16, 16, 1), {"do_residual_on_last": True}), ((16, 24, 1), {})])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_last_block_equals_the_plain_block(dims, spec, dtype):
    """The per_query engine's fused layer norm + residual + final product gives the unfused scores."""
    fused_nets = _qnets(dims, dtype=dtype, **spec)
    plain_nets = fused_nets.with_config(fuse_last_block=False)
    assert fused_nets._fuses_last_block() and not plain_nets._fuses_last_block()   # two code paths compared
    docs = torch.randn(2000, dims[0], generator=torch.Generator().manual_seed(2))
    cands = docs[:300].expand(5, -1, -1)
    plain, fused = plain_nets.score(docs, engine="per_query"), fused_nets.score(docs, engine="per_query")
    assert not torch.equal(fused, plain)   # different arithmetic, the same scores up to rounding
    assert torch.allclose(fused, plain, atol=2e-5, rtol=1e-5)
    assert torch.allclose(fused_nets.score_candidates(cands, engine="per_query"),
                          plain_nets.score_candidates(cands, engine="per_query"), atol=2e-5, rtol=1e-5)


def test_no_layer_norm_is_never_fused():
    """Without a layer norm there is nothing to fold: the per_query engine runs the plain block, as batched does."""
    qnets = _qnets((16, 16, 1), do_residual_on_last=True, do_layer_norm=False)
    assert not qnets._fuses_last_block()
    docs = torch.randn(500, 16, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(qnets.score(docs), qnets.score(docs, engine="batched"), atol=1e-5)
