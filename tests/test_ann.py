"""Correctness of graph and IVF search on small indexes (complete structures reproduce exact search)."""
import numpy as np
import pytest
import torch

from pyserini_hypencoder.ann import (add_graph, add_ivf, build_graph, build_ivf, graph_search, ivf_candidates,
                                     ivf_search, walk)
from pyserini_hypencoder.index import DenseIndex, write_index
from pyserini_hypencoder.model.qnet import QNetBatch, QNetSpec
from pyserini_hypencoder.search.exact import exact_search


def random_qnets(q, dims=(16, 16, 16, 1), seed=0):
    g = torch.Generator().manual_seed(seed)
    w = [torch.randn(q, dims[i], dims[i + 1], generator=g) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    b = [torch.randn(q, 1, dims[i + 1], generator=g) * 0.1 for i in range(len(dims) - 2)]
    return QNetBatch(w, b, QNetSpec(tuple(dims)))


def make_index(path, n, d=16, seed=0):
    vectors = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    write_index(path, [f"d{i}" for i in range(n)], vectors, meta={"encoder": "test"})
    return DenseIndex.open(path), vectors


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    index, vectors = make_index(tmp_path_factory.mktemp("ann") / "idx", 300)
    return index, vectors


def test_missing_structures_name_the_command(small):
    index, _ = small
    assert not index.has_structure("graph") and not index.has_structure("ivf")
    with pytest.raises(ValueError, match="python -m pyserini_hypencoder.index --index .* --add graph"):
        graph_search(random_qnets(2), index, 5)
    with pytest.raises(ValueError, match="--add ivf"):
        ivf_search(random_qnets(2), index, 5)


def test_exact_graph_is_true_l2_neighbourhood():
    vectors = np.random.default_rng(1).standard_normal((120, 8)).astype(np.float32)
    graph = build_graph(vectors, neighbours=10, method="exact", progress=False)
    dist = ((vectors[:, None] - vectors[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    expected = np.argsort(dist, axis=1)[:, :10]
    assert graph.dtype == np.int32 and graph.shape == (120, 10)
    assert (np.sort(graph, 1) == np.sort(expected, 1)).mean() > 0.99
    assert not (graph == np.arange(120)[:, None]).any()  # never its own neighbour (spec 6, item 9)


@pytest.mark.parametrize("variant", ["reference", "paper"])
def test_complete_graph_equals_exact(tmp_path, variant):
    index, vectors = make_index(tmp_path / "idx", 200)
    add_graph(index, neighbours=199, method="exact", progress=False)
    index = DenseIndex.open(index.path)
    assert index.has_structure("graph") and index.meta["structures"]["graph"]["neighbours"] == 199
    qnets = random_qnets(5)
    exact_s, exact_r = exact_search(qnets, index, 20)
    s, r = graph_search(qnets, index, 20, entry_points=3, n_candidates=200, max_iter=3, variant=variant,
                        early_stop=False)
    assert torch.equal(r, exact_r)
    assert torch.allclose(s, exact_s, atol=1e-5)


def test_graph_search_k_larger_than_corpus_and_one_document(tmp_path):
    index, vectors = make_index(tmp_path / "a", 7)
    add_graph(index, neighbours=4, progress=False)
    qnets = random_qnets(3)
    s, r = graph_search(qnets, index, 50, entry_points=2, n_candidates=3, max_iter=10, early_stop=False)
    exact_s, exact_r = exact_search(qnets, index, 50)
    assert r.shape == (3, 7) and torch.equal(r, exact_r)
    one, _ = make_index(tmp_path / "b", 1)
    add_graph(one, neighbours=10, progress=False)
    add_ivf(one, progress=False)
    for search in (graph_search, ivf_search):
        s, r = search(qnets, one, 10)
        assert r.tolist() == [[0]] * 3 and torch.isfinite(s).all()


def test_graph_search_budget_and_early_stop(small):
    index, vectors = small
    graph = build_graph(vectors, neighbours=8, method="exact", progress=False)
    qnets = random_qnets(4)
    found = walk(qnets, vectors, graph, 10, entry_points=16, n_candidates=4, max_iter=3, early_stop=False)
    s, r, scored = found.scores, found.rows, found.scored
    assert (scored <= 16 + 2 * 4 * 8).all() and (scored > 16).all()
    assert torch.all(s[:, :-1] >= s[:, 1:])  # best first
    for qi in range(4):  # results are the true scores of distinct rows
        rows = r[qi][r[qi] >= 0]
        assert len(set(rows.tolist())) == len(rows)
        assert torch.allclose(qnets[qi].score(vectors[rows.numpy()])[0], s[qi][: len(rows)], atol=1e-5)
    # more steps never hurt with the reference semantics
    long = walk(qnets, vectors, graph, 10, entry_points=16, n_candidates=4, max_iter=30, early_stop=False)
    assert torch.all(long.scores.sum(1) >= s.sum(1) - 1e-5)
    # the default stops a query once nothing enters its top k: fewer documents scored, the same top k
    early = walk(qnets, vectors, graph, 10, entry_points=16, n_candidates=4, max_iter=30)
    assert (early.scored <= long.scored).all() and early.scored.sum() < long.scored.sum()
    assert torch.all(early.scores.sum(1) >= s.sum(1) - 1e-5)


def test_ivf_all_lists_equals_exact(tmp_path):
    index, vectors = make_index(tmp_path / "idx", 400)
    info = add_ivf(index, nlist=10, progress=False)
    index = DenseIndex.open(index.path)
    assert index.has_structure("ivf") and info["nlist"] == 10
    qnets = random_qnets(6)
    exact_s, exact_r = exact_search(qnets, index, 30)
    s, r = ivf_search(qnets, index, 30, nprobe=10)
    assert torch.equal(r, exact_r) and torch.allclose(s, exact_s, atol=1e-5)
    found = ivf_search(qnets, index, 500, nprobe=2)
    r, scored = found.rows, found.scored
    assert r.shape == (6, 400) and (scored < 400 + 10).all()
    assert ((r >= 0).sum(1) == scored - 10).all()  # every pool member returned, padding after


def test_ivf_pool_is_the_probed_lists_and_seeds_graph(small):
    index, vectors = small
    ivf = build_ivf(vectors, nlist=6, progress=False)
    assert sorted(ivf["order"].tolist()) == list(range(300))
    qnets = random_qnets(3)
    pool = ivf_candidates(qnets, ivf, 2)
    best = torch.topk(qnets.score(torch.from_numpy(ivf["probes"])), 2, dim=1).indices
    for qi in range(3):
        want = set()
        for lst in best[qi].tolist():
            want |= set(ivf["order"][ivf["offsets"][lst]:ivf["offsets"][lst + 1]].tolist())
        assert set(pool[qi][pool[qi] >= 0].tolist()) == want
    graph = build_graph(vectors, neighbours=8, progress=False)
    s, r = walk(qnets, vectors, graph, 10, initial_candidates=pool, max_iter=1)
    exact_pool = [qnets[qi].score(vectors[pool[qi][pool[qi] >= 0].numpy()])[0].topk(10).values for qi in range(3)]
    assert torch.allclose(s, torch.stack(exact_pool), atol=1e-5)


def test_graph_search_seeded_by_ivf_from_the_index(tmp_path):
    index, vectors = make_index(tmp_path / "idx", 300)
    add_graph(index, neighbours=8, progress=False)
    qnets = random_qnets(3)
    with pytest.raises(ValueError, match="--add ivf"):
        graph_search(qnets, index, 10, ivf_nprobe=2)
    add_ivf(index, nlist=6, progress=False)
    index = DenseIndex.open(index.path)
    found = graph_search(qnets, index, 10, ivf_nprobe=6, max_iter=1)
    r, scored = found.rows, found.scored
    exact_s, exact_r = exact_search(qnets, index, 10)
    assert torch.equal(r, exact_r) and (scored == 300 + 6).all()  # all lists = every document, plus centroids


def test_ivf_graph_build_with_all_lists_is_exact():
    vectors = np.random.default_rng(2).standard_normal((400, 8)).astype(np.float32)
    exact = build_graph(vectors, neighbours=6, method="exact", progress=False)
    listwise = build_graph(vectors, neighbours=6, method="ivf", nlist=5, nprobe=5, progress=False)
    assert listwise.dtype == np.int32 and not (listwise == np.arange(400)[:, None]).any()
    assert (np.sort(listwise, 1) == np.sort(exact, 1)).mean() > 0.99
    with pytest.raises(ValueError, match="unknown graph method"):
        build_graph(vectors, method="lsh")


def test_index_cli_adds_structures_and_reports_errors(tmp_path, capsys):
    from pyserini_hypencoder.cli import run_cli
    from pyserini_hypencoder.index.__main__ import main
    index, _ = make_index(tmp_path / "idx", 120)
    prog = "python -m pyserini_hypencoder.index"
    assert run_cli(main, ["--index", str(index.path), "--add", "graph", "--neighbours", "5"], prog) == 0
    assert run_cli(main, ["--index", str(index.path), "--add", "ivf", "--nlist", "4"], prog) == 0
    reopened = DenseIndex.open(index.path)
    assert reopened.has_structure("graph") and reopened.has_structure("ivf")
    assert reopened.meta["structures"]["graph"]["neighbours"] == 5 and reopened.meta["structures"]["ivf"]["nlist"] == 4
    assert np.load(index.path / "graph.npy").shape == (120, 5)
    assert not [p for p in index.path.iterdir() if p.name.startswith(".")]  # no temporary files left
    capsys.readouterr()
    assert run_cli(main, ["--index", str(tmp_path / "missing"), "--add", "ivf"], prog) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error:")
    assert run_cli(main, ["--index", str(index.path), "--add", "ivf", "--nlist", "500"], prog) == 2


# -- linear-surrogate pools ------------------------------------------------------------------------------------
def near_linear_qnets(q, d=16, seed=0, hidden_scale=0.01):
    """q-nets whose score is almost a dot product: tiny hidden weights, residual carrying x to the last layer."""
    g = torch.Generator().manual_seed(seed)
    spec = QNetSpec((d, d, 1), do_residual=True, do_residual_on_last=True)
    w = [torch.randn(q, d, d, generator=g) * hidden_scale, torch.randn(q, d, 1, generator=g)]
    b = [torch.randn(q, 1, d, generator=g)]
    return QNetBatch(w, b, spec)


def test_surrogate_of_a_linear_part_is_its_weight():
    """For a q-net that is exactly linear in x, the surrogate vector is its last weight."""
    from pyserini_hypencoder.ann import surrogate_vectors
    qnets = near_linear_qnets(3, hidden_scale=0.0)
    anchors = torch.randn(50, 16)
    torch.testing.assert_close(surrogate_vectors(qnets, anchors, 8), qnets.weights[-1][:, :, 0], rtol=1e-5, atol=1e-5)


def test_surrogate_all_candidates_equals_exact(small):
    from pyserini_hypencoder.ann import surrogate_search
    index, _ = small
    qnets = random_qnets(4)
    exact_s, exact_r = exact_search(qnets, index, 25)
    found = surrogate_search(qnets, index, 25, candidates=index.num_docs)
    s, r, scored = found.scores, found.rows, found.scored
    assert torch.equal(r, exact_r) and torch.allclose(s, exact_s)
    assert scored.tolist() == [index.num_docs] * 4


def test_surrogate_finds_the_top_of_near_linear_qnets_with_few_candidates(tmp_path):
    from pyserini_hypencoder.ann import surrogate_search
    index, _ = make_index(tmp_path / "idx", 3000, seed=3)
    qnets = near_linear_qnets(8, seed=4)
    _, exact_r = exact_search(qnets, index, 10)
    found = surrogate_search(qnets, index, 10, candidates=60, anchors=64)
    s, r, scored = found.scores, found.rows, found.scored
    hits = sum(len(set(a) & set(b)) for a, b in zip(r.tolist(), exact_r.tolist()))
    assert hits / exact_r.numel() >= 0.95
    assert scored.tolist() == [60 + 64] * 8  # candidates plus anchors, far below N
    assert (s[:, :-1] >= s[:, 1:]).all()


def test_surrogate_k_larger_than_corpus_and_one_document(tmp_path):
    from pyserini_hypencoder.ann import surrogate_search
    index, _ = make_index(tmp_path / "idx", 7)
    s, r = surrogate_search(random_qnets(2), index, 20, candidates=3)
    assert s.shape == (2, 7) and sorted(r[0].tolist()) == list(range(7))
    one, _ = make_index(tmp_path / "one", 1)
    s, r = surrogate_search(random_qnets(3), one, 5)
    assert r.tolist() == [[0]] * 3 and torch.isfinite(s).all()
    with pytest.raises(ValueError, match="candidates must be positive"):
        surrogate_search(random_qnets(1), index, 5, candidates=0)
