"""The faiss-ivf first stage of the surrogate: built by the index CLI, recorded in meta.json, equal to the scan when
every list is probed with exact codes, close to it with 8-bit codes and few lists."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("faiss")

from pyserini_hypencoder.ann.faiss_ip import (FAISS_IVF, FAISS_IVF_FILE, add_faiss_ivf, build_faiss_ivf,  # noqa: E402
                                              faiss_ip_topk, load_faiss_ivf)
from pyserini_hypencoder.ann.surrogate import surrogate_search  # noqa: E402
from pyserini_hypencoder.index import DenseIndex, write_index  # noqa: E402
from pyserini_hypencoder.search.exact import exact_search  # noqa: E402
from pyserini_hypencoder.strategies import STRATEGIES  # noqa: E402

from test_ann import near_linear_qnets, random_qnets  # noqa: E402


def clustered_index(path, n=4000, d=16, seed=0, storage_dtype="float32"):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, d)).astype(np.float32) * 3
    vectors = centres[rng.integers(0, 40, n)] + rng.standard_normal((n, d)).astype(np.float32)
    write_index(path, [f"d{i}" for i in range(n)], vectors, meta={"encoder": "test"}, storage_dtype=storage_dtype)
    return DenseIndex.open(path), vectors


def test_flat_codes_all_lists_are_the_exact_inner_product_top(tmp_path):
    index, vectors = clustered_index(tmp_path / "idx", n=1000)
    built = build_faiss_ivf(index, nlist=8, encoding="flat", progress=False)
    queries = torch.randn(5, 16)
    rows = faiss_ip_topk(built, queries, 50, nprobe=8)
    expected = torch.topk(queries @ torch.from_numpy(vectors).T, 50, dim=1).indices
    assert rows.shape == (5, 50) and rows.dtype == torch.int64
    assert all(set(a) == set(b) for a, b in zip(rows.tolist(), expected.tolist()))


def test_add_records_the_structure_and_surrogate_uses_it(tmp_path):
    index, _ = clustered_index(tmp_path / "idx")
    info = add_faiss_ivf(index, nlist=16, progress=False)
    index = DenseIndex.open(index.path)
    meta = json.loads((index.path / "meta.json").read_text())
    assert meta["structures"][FAISS_IVF] == info and info["file"] == FAISS_IVF_FILE and info["metric"] == "ip"
    assert index.has_structure(FAISS_IVF) and load_faiss_ivf(index).ntotal == index.num_docs
    assert not list(index.path.glob(".*"))   # nothing half-written left beside it
    qnets = near_linear_qnets(8, seed=4)
    _, exact_rows = exact_search(qnets, index, 10)
    scan = surrogate_search(qnets, index, 10, candidates=100, anchors=64, first_stage="scan")
    ivf = surrogate_search(qnets, index, 10, candidates=100, anchors=64, nprobe=8)   # auto: the structure
    every = surrogate_search(qnets, index, 10, candidates=100, anchors=64, nprobe=16)
    def hits(found):
        return sum(len(set(a) & set(b)) for a, b in zip(found.rows.tolist(), exact_rows.tolist())) / exact_rows.numel()
    assert hits(scan) >= 0.95 and hits(every) >= 0.95 and hits(ivf) >= 0.85
    assert (ivf.scored < 100 + 64 + 1).all() and (every.scored == 100 + 64).all()
    # the rescoring is exact: the scores of rows both found agree with exact search
    torch.testing.assert_close(every.scores, scan.scores)
    assert (every.scores[:, :-1] >= every.scores[:, 1:]).all()


def test_faiss_first_stage_on_bf16_storage_and_k_beyond_the_pool(tmp_path):
    index, _ = clustered_index(tmp_path / "idx", n=500, storage_dtype="bfloat16")
    add_faiss_ivf(index, nlist=8, encoding="fp16", progress=False)
    index = DenseIndex.open(index.path)
    qnets = random_qnets(3)
    found = surrogate_search(qnets, index, 20, candidates=20, anchors=16, nprobe=1)
    assert found.rows.shape == (3, 20)
    valid = found.rows >= 0
    assert torch.isfinite(found.scores[valid]).all() and torch.isneginf(found.scores[~valid]).all()
    exact = exact_search(qnets, index, 500)   # each found score is the exact score of its row
    for q in range(3):
        lookup = dict(zip(exact.rows[q].tolist(), exact.scores[q].tolist()))
        for row, score in zip(found.rows[q].tolist(), found.scores[q].tolist()):
            if row >= 0:
                assert abs(lookup[row] - score) < 1e-3


def test_errors_are_one_line(tmp_path):
    index, _ = clustered_index(tmp_path / "idx", n=200)
    with pytest.raises(ValueError, match="--add faiss-ivf"):
        surrogate_search(random_qnets(1), index, 5, first_stage="faiss-ivf")
    with pytest.raises(ValueError, match="first_stage"):
        surrogate_search(random_qnets(1), index, 5, first_stage="lsh")
    with pytest.raises(ValueError, match="encoding"):
        build_faiss_ivf(index, encoding="pq", progress=False)
    with pytest.raises(ValueError, match="must be one of"):
        STRATEGIES["surrogate"].resolve({"first_stage": "x"})


def test_cli_adds_faiss_ivf(tmp_path):
    index, _ = clustered_index(tmp_path / "idx", n=800)
    done = subprocess.run([sys.executable, "-m", "pyserini_hypencoder.index", "--index", str(index.path), "--add",
                           "faiss-ivf", "--faiss-nlist", "8", "--threads", "1", "--quiet"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert DenseIndex.open(index.path).structures[FAISS_IVF]["nlist"] == 8
