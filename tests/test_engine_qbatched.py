"""The qbatched engine (one GEMM for the first layer of all q-nets, bmm after, fused last block) scores what the
per-query engine scores: on the CPU always, on CUDA when present, with torch.compile when asked."""
import numpy as np
import pytest
import torch

from pyserini_hypencoder.model import QNetBatch, QNetSpec
from pyserini_hypencoder.model.engine import ScoringConfig
from pyserini_hypencoder.search.exact import exact_search

SHAPES = [((16, 16, 16, 1), {}), ((16, 16, 1), {"do_residual_on_last": True}), ((16, 32, 1), {}),
          ((16, 16, 16, 1), {"layer_norm_before_residual": False}), ((16, 16, 16, 16, 1), {"do_layer_norm": False}),
          ((16, 16, 16, 1), {"do_residual_on_last": True})]


def _qnets(dims, q=5, dtype=torch.float32, seed=0, **spec):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(q, dims[i], dims[i + 1], generator=g) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    biases = [torch.randn(q, 1, dims[i + 1], generator=g) * 0.1 for i in range(len(dims) - 2)]
    return QNetBatch(weights, biases, QNetSpec(tuple(dims), **spec), dtype)


@pytest.mark.parametrize("dims,spec", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("fuse", [True, False])
def test_qbatched_matches_per_query_on_cpu(dims, spec, dtype, fuse):
    qnets = _qnets(dims, dtype=dtype, **spec).with_config(fuse_last_block=fuse)
    docs = np.random.default_rng(1).standard_normal((2000, dims[0])).astype(np.float32)
    expected = qnets.score(docs, engine="per_query")
    got = qnets.score(docs, engine="qbatched")
    assert got.shape == (5, 2000) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, atol=1e-4 if dtype == torch.float32 else 2e-2, rtol=1e-4)
    assert torch.equal(qnets.with_config(engine="qbatched").score(docs), got)


def test_qbatched_exact_search_finds_the_same_top(tmp_path):
    qnets = _qnets((16, 16, 16, 1), q=6)
    vectors = torch.randn(5000, 16)
    base = exact_search(qnets, vectors, 50)
    found = exact_search(qnets.with_config(engine="qbatched"), vectors, 50)
    assert torch.equal(found.rows, base.rows)
    torch.testing.assert_close(found.scores, base.scores, atol=1e-4, rtol=1e-4)


def test_block_rows_grow_on_an_accelerator_only():
    config = ScoringConfig(engine="qbatched")
    assert config.block_rows(768, 32, torch.device("cpu")) == ScoringConfig(engine="batched").block_rows(768, 32, None)
    assert config.block_rows(768, 32, torch.device("cuda")) == 2 * 2 ** 30 // (4 * 768 * 32)
    with pytest.raises(ValueError, match="qbatched"):
        ScoringConfig(engine="qbatch")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the qbatched engine was checked on "
                                                          "the CPU only (benchmarks/gpu_run.sh measures it on a GPU)")
@pytest.mark.parametrize("compile", [False, True])
def test_qbatched_on_cuda_matches_the_cpu(compile):
    qnets = _qnets((64, 64, 64, 1), q=8, dtype=torch.bfloat16)
    docs = torch.randn(4096, 64)
    expected = qnets.score(docs, engine="per_query")
    gpu = qnets.to("cuda").with_config(engine="qbatched", compile=compile)
    got = gpu.score(docs.cuda()).cpu()
    torch.testing.assert_close(got, expected, atol=5e-2, rtol=2e-2)


def test_a_fresh_process_scores_the_same_bits_call_after_call():
    """The per-query engine's worker threads set their own thread count when they start: a new thread otherwise runs
    its first calls with the process default, and the same block scored twice in one process differed in the last
    bit (a sharded search then differed from the merged one).  A fresh interpreter, because the pool is made once."""
    import subprocess
    import sys
    from pathlib import Path
    code = """
import sys, torch
sys.path.insert(0, {tests!r})
from test_engine_qbatched import _qnets
torch.set_num_threads(2)
qnets = _qnets((32, 32, 32, 1), q=3)
docs = torch.randn(7, 32, generator=torch.Generator().manual_seed(3))
first = qnets.score(docs)
print(all(torch.equal(first, qnets.score(docs)) for _ in range(5)))
""".format(tests=str(Path(__file__).resolve().parent))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "True"


def test_a_batch_iterates_and_indexes_like_a_sequence():
    """list(qnets) gives one batch per q-net and ends (it never ended, so batch_search(qnets, ...) with a QNetBatch
    hung); an int out of range is an IndexError; a negative int counts from the end."""
    qnets = _qnets((16, 16, 1), q=3)
    docs = torch.randn(4, 16)
    parts = list(qnets)
    assert len(parts) == 3 and all(len(p) == 1 for p in parts)
    assert torch.equal(torch.cat([p.score(docs) for p in parts]), qnets.score(docs))
    assert torch.equal(qnets[-1].score(docs), qnets[2].score(docs))
    with pytest.raises(IndexError):
        qnets[3]
    with pytest.raises(IndexError):
        qnets[-4]
