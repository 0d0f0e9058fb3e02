"""The speed benchmarks run end to end in their quick modes (real measurements, small sizes)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
