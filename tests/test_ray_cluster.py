"""A real two-node Ray cluster (one CPU each) inside a network namespace that has only ``lo``, so all of Ray's
traffic stays on 127.0.0.1: a Ray encode equals the local encode byte for byte (one index, and shards); a Ray
sharded search writes the local sharded search's run file; an encoder actor killed mid-encode is restarted by
Ray and the index is unchanged.  Skipped without the ``ray`` extra, except under CI=true, where it fails."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pyserini_hypencoder.cli import run_cli
from pyserini_hypencoder.distributed import loopback
from pyserini_hypencoder.encode._cli import main as encode_main, merge_main
from pyserini_hypencoder.search._main import main as search_main

pytestmark = pytest.mark.slow

try:
    import ray  # noqa: F401
except ImportError:
    if os.environ.get("CI") == "true":
        raise RuntimeError('CI=true but the ray extra is not installed: pip install "pyserini-hypencoder[ray]"')
    pytest.skip('the ray extra is not installed (pip install "pyserini-hypencoder[ray]")', allow_module_level=True)

WORDS = "the a cell cells protein gene dna cancer risk blood brain virus study test patients".split()
PORT = 6379
FILES = ("index", "docid", "meta.json")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A head and a worker node, 1 CPU each, in a namespace with only lo (distributed.loopback)."""
    if not loopback.available():
        if os.environ.get("CI") == "true":
            pytest.fail("the Ray cluster test needs root and iproute2 (ip netns) under CI")
        pytest.skip("the Ray cluster test needs root and iproute2 (ip netns)")
    package_root = str(Path(__import__("pyserini_hypencoder").__file__).resolve().parents[1])
    env = dict(OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])))
    with loopback.loopback_cluster([1, 1], port=PORT, env=env,
                                   temp_dir=tmp_path_factory.mktemp("ray") / "ray") as running:
        yield running


def in_cluster(cluster, *argv, timeout=300):
    return loopback.run_in(cluster, argv, timeout=timeout)


@pytest.fixture(scope="module")
def world(tmp_path_factory, parity_dir):
    root = tmp_path_factory.mktemp("raydata")
    rng = np.random.default_rng(3)
    docs = [{"_id": f"D{i:02d}", "title": WORDS[i % len(WORDS)], "text": " ".join(rng.choice(WORDS, size=6 + i % 9))}
            for i in range(37)]
    corpus = root / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    topics = root / "topics.tsv"
    topics.write_text("1\tcancer risk in patients\n2\tprotein gene dna\n3\tbrain virus study\n", encoding="utf-8")
    return dict(root=root, corpus=corpus, topics=topics, checkpoint=str(parity_dir / "checkpoint_bin"))


def encode_args(world, out, *extra_input, output=(), encoder=()):
    return ["-m", "pyserini_hypencoder.encode", "input", "--corpus", world["corpus"], *extra_input, "output",
            "--embeddings", out, "--chunk-size", "8", *output, "encoder", "--encoder", world["checkpoint"],
            "--max-length", "32", "--batch-size", "4", "--threads", "1", "--quiet", *encoder]


def test_ray_encode_search_and_a_killed_worker(cluster, world, tmp_path):
    local = tmp_path / "local"
    assert run_cli(encode_main, [str(a) for a in encode_args(world, local)[2:]]) == 0
    # one index, encoded by two actors on two nodes
    result = in_cluster(cluster, *encode_args(world, tmp_path / "ray", encoder=["--ray", cluster["address"]]))
    assert result.returncode == 0, result.stderr[-2000:]
    for name in FILES:
        assert (tmp_path / "ray" / name).read_bytes() == (local / name).read_bytes(), name
    # three shards: each the local --shard-id/--shard-num encode's (other chunks than the whole encode's, so the
    # vectors equal the whole index's only to float noise)
    result = in_cluster(cluster, *encode_args(world, tmp_path / "shards", output=["--ray-shards", "3"],
                                              encoder=["--ray", cluster["address"]]))
    assert result.returncode == 0, result.stderr[-2000:]
    for i in range(3):
        part = tmp_path / "local-shards" / f"part-{i}"
        args = encode_args(world, part, "--shard-id", str(i), "--shard-num", "3")[2:]
        assert run_cli(encode_main, [str(a) for a in args]) == 0
        for name in FILES:
            assert (tmp_path / "shards" / part.name / name).read_bytes() == (part / name).read_bytes(), (part, name)
    assert run_cli(merge_main, ["--shards", *map(str, sorted((tmp_path / "shards").iterdir())), "--output",
                                str(tmp_path / "merged"), "--quiet"]) == 0
    from pyserini_hypencoder.index import DenseIndex
    merged, whole = DenseIndex.open(tmp_path / "merged"), DenseIndex.open(local)
    assert merged.docids == whole.docids
    np.testing.assert_allclose(merged.vectors.block(0, 99).numpy(), whole.vectors.block(0, 99).numpy(), atol=1e-5)
    # search: shards in Ray actors == local sharded search == their merged index
    search = ["-m", "pyserini_hypencoder.search", "--topics", world["topics"], "--encoder", world["checkpoint"],
              "--hits", "20", "--quiet", "--exact-block-size", "5"]
    result = in_cluster(cluster, *search, "--index", tmp_path / "shards", "--output", tmp_path / "ray.trec",
                        "--ray", cluster["address"])
    assert result.returncode == 0, result.stderr[-2000:]
    for index in (tmp_path / "shards", tmp_path / "merged"):
        assert run_cli(search_main, [str(a) for a in search[2:]] + ["--index", str(index), "--output",
                                                                    str(tmp_path / "local.trec")]) == 0
        assert (tmp_path / "ray.trec").read_bytes() == (tmp_path / "local.trec").read_bytes(), index
    # an encoder actor killed after the first chunk: restarted, its chunks retried, the same index
    result = in_cluster(cluster, Path(__file__).with_name("ray_driver.py"), "kill-encode", cluster["address"],
                        world["corpus"], world["checkpoint"], tmp_path / "killed")
    assert result.returncode == 0 and "killed encoder actor" in result.stderr, result.stderr[-2000:]
    for name in FILES:
        assert (tmp_path / "killed" / name).read_bytes() == (local / name).read_bytes(), name


def test_unreachable_address_is_one_line_and_writes_nothing(cluster, world, tmp_path):
    out = tmp_path / "nothing"
    result = in_cluster(cluster, *encode_args(world, out, encoder=["--ray", "127.0.0.1:9"]), timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2 and len(lines) == 1 and "cannot reach a Ray cluster at 127.0.0.1:9" in lines[0]
    assert not out.exists() and not list(tmp_path.iterdir())
