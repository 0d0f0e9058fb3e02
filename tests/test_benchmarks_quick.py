"""The speed benchmarks run end to end in their quick modes (real measurements, small sizes)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow   # each runs a benchmark script in a fresh interpreter


def run(script, *args):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_bench_qnet_quick(tmp_path):
    stdout = run("bench_qnet.py", "--quick", "--json", str(tmp_path / "q.json"))
    assert "GEMM peak fp32" in stdout and "speed-up" in stdout
    result = json.loads((tmp_path / "q.json").read_text())
    assert {r["dtype"] for r in result["rows"]} == {"fp32", "bf16"}
    assert {r["shape"] for r in result["rows"]} == {"published-6x768", "default-model"}
    for row in result["rows"]:
        assert row["plugin_docs_per_s"] > 0 and row["baseline_docs_per_s"] > 0 and 0 < row["plugin_frac"]


def test_bench_ann_quick(tmp_path):
    stdout = run("bench_ann.py", "--quick", "--json", str(tmp_path / "a.json"))
    assert "built graph + ivf" in stdout and "R@100" in stdout
    rows = json.loads((tmp_path / "a.json").read_text())
    methods = {r["method"] for r in rows}
    assert methods == {"exact", "ivf", "graph", "ivf+graph", "surrogate"}
    exact = [r for r in rows if r["method"] == "exact"][0]
    assert exact["recall@100"] == 1.0 and exact["docs_scored"] == exact["n"]
    for r in rows:
        if r["method"] != "exact":
            assert r["docs_scored"] < exact["n"] and 0 < r["recall@100"] <= 1
    run("bench_ann.py", "plot", str(tmp_path / "a.json"), "--png", str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_fallback_without_matplotlib(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_ann
    finally:
        sys.path.pop(0)
    rows = [{"label": "a", "method": m, "p50_ms": t, "recall@100": r}
            for m, t, r in (("exact", 10.0, 1.0), ("ivf", 1.0, 0.5), ("graph", 2.0, 0.7))]
    bench_ann.plot_with_pillow(rows, ["a"], tmp_path / "p.png")
    from PIL import Image
    with Image.open(tmp_path / "p.png") as img:
        assert img.size[0] > 100 and len(img.convert("RGB").getcolors(maxcolors=100000)) > 3  # drawn, not blank


def test_bench_ann_scale_with_random_qnets_of_a_wider_shape(tmp_path):
    """scale mode: a mixture drawn like a (tiny) index, lifted to the random q-nets' wider input, exact truth and a
    surrogate row; the lift keeps inner products."""
    import numpy as np
    from pyserini_hypencoder.index import write_index
    rng = np.random.default_rng(0)
    real = rng.standard_normal((400, 8)).astype(np.float32)
    write_index(tmp_path / "idx", [f"d{i}" for i in range(len(real))], real)
    configs = tmp_path / "c.json"
    configs.write_text(json.dumps([{"method": "exact", "params": {}},
                                   {"method": "surrogate", "params": {"candidates": 200, "anchors": 64}}]))
    run("bench_ann.py", "--json", str(tmp_path / "s.json"), "scale", "--index", str(tmp_path / "idx"),
        "--random-qnets", "16,16,1", "--num-queries", "8", "--num-docs", "1000", "--work", str(tmp_path / "w"),
        "--nlist", "8", "--no-graph", "--configs", str(configs))
    rows = json.loads((tmp_path / "s.json").read_text())
    assert [r["method"] for r in rows] == ["exact", "surrogate"]
    assert all(r["n"] == 1000 and r["queries"] == 8 for r in rows)
    assert 0 < rows[1]["recall@100"] <= 1 and rows[1]["docs_scored"] < 1000

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_ann
    finally:
        sys.path.pop(0)
    lifted = bench_ann.lift(real, 16)
    assert lifted.shape == (400, 16)
    np.testing.assert_allclose(lifted @ lifted.T, real @ real.T, rtol=1e-4, atol=1e-3)
    # the chunked writer draws what the one-array helper draws, lifted per chunk as lift() lifts the whole
    chunks = np.concatenate(list(bench_ann.mixture_chunks(real, 700, chunk=300, lift_to=16)))
    whole = bench_ann.lift(bench_ann.mixture_like(real, 700, chunk=300), 16)
    np.testing.assert_allclose(chunks, whole, rtol=1e-4, atol=1e-4)

    # bf16 storage, the faiss-ivf first stage, truth for part of the queries, per-step memory
    (tmp_path / "f.json").write_text(json.dumps([{"method": "surrogate", "params": {"candidates": 200, "nprobe": 8}}]))
    run("bench_ann.py", "--json", str(tmp_path / "f-out.json"), "scale", "--index", str(tmp_path / "idx"),
        "--random-qnets", "16,16,1", "--num-queries", "8", "--truth-queries", "4", "--num-docs", "1000", "--bf16",
        "--work", str(tmp_path / "w"), "--add", "faiss-ivf", "--faiss-nlist", "8", "--chunk", "300",
        "--configs", str(tmp_path / "f.json"))
    rows = json.loads((tmp_path / "f-out.json").read_text())
    assert [r["method"] for r in rows] == ["exact", "surrogate"] and rows[0]["queries"] == 4
    assert rows[1]["recall@100"] > 0.5 and set(rows[1]["builds"]) == {"faiss-ivf"}
    steps = rows[1]["steps"]
    assert {"generate and write vectors", "exact ground truth"} <= set(steps)
    assert all(step["peak_rss_mb"] > 0 for step in steps.values())
    meta = json.loads((tmp_path / "w" / "synthetic-1000-lifted16-bf16" / "meta.json").read_text())
    assert meta["dtype"] == "bfloat16" and meta["structures"]["faiss-ivf"]["nlist"] == 8


def test_bench_query_encoding_quick(tmp_path):
    stdout = run("bench_query_encoding.py", "--quick", "--json", str(tmp_path / "e.json"))
    assert "alone fp32" in stdout and "padded bf16" in stdout
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["plugin_path_is_alone_fp32"] is True
    assert set(result["ms_per_query"]) == {"alone fp32", "alone bf16", "padded fp32", "padded bf16"}
    assert all(ms > 0 for ms in result["ms_per_query"].values())
    assert result["padded_weight_gap"] >= 0 and result["padded_score_gap"] >= 0
