"""The index directory: writer/reader round trips, faiss/Pyserini compatibility, atomicity, errors, merge."""
import json
import os

import faiss
import numpy as np
import pytest
import torch

from pyserini_hypencoder.index import (DenseIndex, IndexFormatError, IndexMismatchError, IndexWriter,
                                       export_parquet, merge_indexes, partial_dir_for, write_index)

META = {"encoder": "enc-a", "encoder_fingerprint": "f" * 16, "pooling": "cls", "max_length": 32, "bf16": False}


def _data(n=37, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return [f"doc-{i}" for i in range(n)], rng.standard_normal((n, d)).astype(np.float32)


def _expected(vectors, dtype):
    if dtype == "float32":
        return vectors
    if dtype == "float16":
        return vectors.astype(np.float16).astype(np.float32)
    return torch.from_numpy(vectors).to(torch.bfloat16).float().numpy()


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_round_trip(tmp_path, dtype):
    docids, vectors = _data()
    write_index(tmp_path / "ix", docids, vectors, META, storage_dtype=dtype)
    index = DenseIndex.open(tmp_path / "ix")
    assert index.docids == docids and index.num_docs == 37 and index.dimension == 12
    assert index.storage_dtype == dtype and index.meta["dtype"] == dtype
    assert index.vectors.stored.dtype == {"float32": np.float32, "float16": np.float16, "bfloat16": np.uint16}[dtype]
    assert isinstance(index.vectors.stored, np.memmap)  # not read into memory
    expected = _expected(vectors, dtype)
    np.testing.assert_array_equal(index.vectors.block(0, 37).numpy(), expected)
    np.testing.assert_array_equal(index.vectors.block(5, 9).numpy(), expected[5:9])
    assert index.vectors.block(30, 99).shape == (7, 12)  # clipped at the end
    assert index.vectors.block(0, 4, dtype=torch.bfloat16).dtype == torch.bfloat16
    np.testing.assert_array_equal(index.vectors.rows([9, 2, 9]).numpy(), expected[[9, 2, 9]])
    in_memory = DenseIndex.open(tmp_path / "ix", mmap=False)
    assert not isinstance(in_memory.vectors.stored, np.memmap)
    np.testing.assert_array_equal(in_memory.vectors.block(0, 37).numpy(), expected)
    meta = json.loads((tmp_path / "ix" / "meta.json").read_text())
    assert meta["format"] == "pyserini-hypencoder-index" and meta["version"] == 1
    assert {k: meta[k] for k in META} == META
    assert (meta["num_docs"], meta["dimension"]) == (37, 12)
    # the faiss file always holds the exact float32 vectors, whatever the storage dtype
    np.testing.assert_array_equal(faiss.read_index(str(tmp_path / "ix" / "index")).reconstruct_n(0, 37), vectors)
    assert sorted(os.listdir(tmp_path)) == ["ix"]  # no temporary directory left beside it


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_matrix_is_the_map_when_it_holds_the_dtype(tmp_path, dtype):
    docids, vectors = _data()
    write_index(tmp_path / "ix", docids, vectors, META, storage_dtype=dtype)
    index = DenseIndex.open(tmp_path / "ix")
    stored = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype]
    other = torch.float16 if stored == torch.float32 else torch.float32
    file_bytes = {name: (tmp_path / "ix" / name).read_bytes() for name in os.listdir(tmp_path / "ix")}
    same = index.vectors.matrix(dtype=stored)
    assert same.dtype == stored and same.shape == (37, 12)
    np.testing.assert_array_equal(same.float().numpy(), _expected(vectors, dtype))
    base = same.untyped_storage().data_ptr()
    assert base == index.vectors.matrix(dtype=stored).untyped_storage().data_ptr()   # cached
    if os.path.exists("/proc/self/maps"):   # inside a mapping of the vectors' file, not a heap copy of it
        name = "index" if dtype == "float32" else "vectors.npy"
        spans = [[int(x, 16) for x in line.split()[0].split("-")] for line in open("/proc/self/maps")
                 if line.rstrip().endswith(str(tmp_path / "ix" / name))]
        assert any(lo <= base < hi for lo, hi in spans), spans
    same[0, 0] = 123.0   # private to the process: the file does not change
    assert {name: (tmp_path / "ix" / name).read_bytes() for name in os.listdir(tmp_path / "ix")} == file_bytes
    converted = index.vectors.matrix(dtype=other)   # another dtype: a converted copy
    assert converted.dtype == other
    np.testing.assert_array_equal(converted[1:].float().numpy(),
                                  torch.from_numpy(_expected(vectors, dtype)[1:]).to(other).float().numpy())
    in_memory = DenseIndex.open(tmp_path / "ix", mmap=False).vectors
    assert in_memory.matrix(dtype=stored).dtype == stored


def test_memmap_offset_matches_faiss(tmp_path):
    docids, vectors = _data(n=5, d=3)
    write_index(tmp_path / "ix", docids, vectors, META)
    faiss_index = faiss.read_index(str(tmp_path / "ix" / "index"))
    assert isinstance(faiss_index, faiss.IndexFlatIP) and faiss_index.ntotal == 5 and faiss_index.d == 3
    np.testing.assert_array_equal(np.asarray(DenseIndex.open(tmp_path / "ix").vectors.stored),
                                  faiss_index.reconstruct_n(0, 5))
    # our header equals the one faiss writes itself
    reference = faiss.IndexFlatIP(3)
    reference.add(vectors)
    assert (tmp_path / "ix" / "index").read_bytes() == faiss.serialize_index(reference).tobytes()


def test_pyserini_faiss_searcher_loads_it(tmp_path):
    from pyserini.encode import QueryEncoder
    from pyserini.search.faiss import FaissSearcher

    docids, vectors = _data()
    write_index(tmp_path / "ix", docids, vectors, META, storage_dtype="float16")
    searcher = FaissSearcher(str(tmp_path / "ix"), QueryEncoder())
    assert searcher.num_docs == 37 and searcher.dimension == 12 and searcher.docids == docids
    hits = searcher.search(vectors[3:4], k=5)
    best = np.argsort(-(vectors @ vectors[3]), kind="stable")[:5]
    assert [h.docid for h in hits] == [docids[i] for i in best]
    assert hits[0].score == pytest.approx(float(vectors[3] @ vectors[3]), rel=1e-5)


def test_rows_for(tmp_path):
    docids, vectors = _data()
    index = DenseIndex.open(write_index(tmp_path / "ix", docids, vectors, META))
    rows = index.rows_for(["doc-7", "missing", "doc-0", "doc-36"])
    assert rows.dtype == np.int64 and rows.tolist() == [7, -1, 0, 36]
    assert index.rows_for([]).tolist() == []


def test_check_encoder(tmp_path):
    docids, vectors = _data()
    index = DenseIndex.open(write_index(tmp_path / "ix", docids, vectors, META))
    index.check_encoder("other/path", "f" * 16)  # same weights under another name: fine
    with pytest.raises(IndexMismatchError) as err:
        index.check_encoder("enc-b", "0" * 16)
    assert "enc-a" in str(err.value) and "enc-b" in str(err.value) and "0" * 16 in str(err.value)
    index.check_encoder("enc-b", "0" * 16, force=True)
    with pytest.raises(IndexMismatchError, match="12-d"):
        index.check_encoder("enc-a", "f" * 16, dimension=384, force=True)


def test_failure_mid_write_leaves_nothing(tmp_path):
    docids, vectors = _data()
    with pytest.raises(RuntimeError):
        with IndexWriter(tmp_path / "ix", dimension=12, meta=META) as writer:
            writer.add(docids[:10], vectors[:10])
            assert partial_dir_for(tmp_path / "ix").is_dir()
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="duplicate docid 'doc-1'"):  # fails while assembling
        with IndexWriter(tmp_path / "ix", dimension=12, meta=META) as writer:
            writer.add(docids[:5], vectors[:5])
            writer.add(docids[1:3], vectors[1:3])
    assert os.listdir(tmp_path) == []
    for bad in ("a\nb", "doc 1", "doc\t2", " d"):   # a TREC run line could not hold it
        with pytest.raises(ValueError, match="contains whitespace"):
            write_index(tmp_path / "ix", [bad], vectors[:1], META)
    with pytest.raises(ValueError, match=r"expected \(2, 12\) vectors, got \(2, 5\)"):
        with IndexWriter(tmp_path / "ix", dimension=12, meta=META) as writer:
            writer.add(["a", "b"], vectors[:2, :5])
    assert os.listdir(tmp_path) == []


def test_existing_target(tmp_path):
    docids, vectors = _data()
    write_index(tmp_path / "ix", docids, vectors, META)
    with pytest.raises(FileExistsError, match="not empty"):
        write_index(tmp_path / "ix", docids[:3], vectors[:3], META)
    write_index(tmp_path / "ix", docids[:3], vectors[:3], META, overwrite=True)
    assert DenseIndex.open(tmp_path / "ix").num_docs == 3
    assert sorted(os.listdir(tmp_path)) == ["ix"]
    (tmp_path / "empty").mkdir()
    write_index(tmp_path / "empty", docids[:2], vectors[:2], META)  # an empty directory may be filled


def test_resumable_writer(tmp_path):
    docids, vectors = _data()
    key = {"corpus": "c1", "chunk_size": 10}
    with pytest.raises(KeyboardInterrupt):
        with IndexWriter(tmp_path / "ix", dimension=12, meta=META, resume_key=key) as writer:
            writer.add(docids[:10], vectors[:10])
            writer.add(docids[10:20], vectors[10:20])
            raise KeyboardInterrupt
    partial = partial_dir_for(tmp_path / "ix")
    assert not (tmp_path / "ix").exists() and partial.is_dir()
    np.save(partial / "chunk-000002.npy", vectors[20:30])  # a chunk killed before its docid file was written
    (partial / ".chunk-000002.docid").write_text("half")
    with pytest.raises(FileExistsError, match="other settings"):
        IndexWriter(tmp_path / "ix", dimension=12, meta=META, resume_key={"corpus": "c2"}).open()
    with IndexWriter(tmp_path / "ix", dimension=12, meta=META, resume_key=key) as writer:
        assert (writer.num_added, writer.resumed_chunks) == (20, 2)
        writer.add(docids[20:], vectors[20:])
    index = DenseIndex.open(tmp_path / "ix")
    assert index.docids == docids
    np.testing.assert_array_equal(index.vectors.block(0, 37).numpy(), vectors)
    assert sorted(os.listdir(tmp_path)) == ["ix"]


@pytest.mark.parametrize("problem, message", [
    ("no-meta", "meta.json is missing"), ("bad-json", "unreadable meta.json"), ("format", "format is"),
    ("no-docid", "lacks the docid file"), ("no-index", "lacks the index file"), ("count", "2 docids"),
    ("truncated", "inconsistent faiss index"), ("no-vectors", "lacks the vectors.npy file"),
    ("16-bit-no-index", "lacks the index file"),
])
def test_format_errors(tmp_path, problem, message):
    docids, vectors = _data(n=3, d=4)
    path = write_index(tmp_path / "ix", docids, vectors, META,
                       storage_dtype="float16" if problem in ("no-vectors", "16-bit-no-index") else "float32")
    meta_path = path / "meta.json"
    if problem == "no-meta":
        meta_path.unlink()
    elif problem == "bad-json":
        meta_path.write_text("{not json")
    elif problem == "format":
        meta_path.write_text(json.dumps({**json.loads(meta_path.read_text()), "format": "other"}))
    elif problem == "no-docid":
        (path / "docid").unlink()
    elif problem in ("no-index", "16-bit-no-index"):
        (path / "index").unlink()
    elif problem == "count":
        (path / "docid").write_text("a\nb\n")
    elif problem == "truncated":
        (path / "index").write_bytes((path / "index").read_bytes()[:-4])
    elif problem == "no-vectors":
        (path / "vectors.npy").unlink()
    with pytest.raises(IndexFormatError, match=message) as err:
        DenseIndex.open(path)
    assert str(path) in str(err.value)
    with pytest.raises(IndexFormatError, match="no such index directory"):
        DenseIndex.open(tmp_path / "nowhere")


def test_parquet_export(tmp_path):
    import pyarrow.parquet as pq

    docids, vectors = _data()
    index = DenseIndex.open(write_index(tmp_path / "ix", docids, vectors, META, storage_dtype="bfloat16"))
    export_parquet(index, tmp_path / "out" / "v.parquet", rows_per_group=10)
    table = pq.read_table(tmp_path / "out" / "v.parquet")
    assert table.column_names == ["id", "vector"] and table.num_rows == 37
    assert table.column("id").to_pylist() == docids
    np.testing.assert_array_equal(np.array(table.column("vector").to_pylist(), dtype=np.float32),
                                  _expected(vectors, "bfloat16"))


def test_merge_shards(tmp_path):
    docids, vectors = _data(n=10)
    bounds = [(0, 3), (3, 6), (6, 10)]
    for i, (a, b) in reversed(list(enumerate(bounds))):
        meta = {**META, "shard": {"id": i, "num": 3, "start": a, "stop": b, "corpus": "c"}}
        write_index(tmp_path / f"s{i}", docids[a:b], vectors[a:b], meta, storage_dtype="float16")
    merge_indexes([tmp_path / "s2", tmp_path / "s0", tmp_path / "s1"], tmp_path / "all")  # shard order wins
    merged = DenseIndex.open(tmp_path / "all")
    assert merged.docids == docids and "shard" not in merged.meta and merged.storage_dtype == "float16"
    np.testing.assert_array_equal(merged.vectors.block(0, 10).numpy(), _expected(vectors, "float16"))
    with pytest.raises(ValueError, match="each shard id"):
        merge_indexes([tmp_path / "s0", tmp_path / "s2"], tmp_path / "bad")
    write_index(tmp_path / "other", ["x"], vectors[:1], {**META, "encoder_fingerprint": "0" * 16,
                                                        "shard": {"id": 1, "num": 3, "corpus": "c"}},
                storage_dtype="float16")
    with pytest.raises(IndexMismatchError, match="encoder_fingerprint"):
        merge_indexes([tmp_path / "s0", tmp_path / "other", tmp_path / "s2"], tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_record_structure(tmp_path):
    docids, vectors = _data()
    index = DenseIndex.open(write_index(tmp_path / "ix", docids, vectors, META))
    index.record_structure("graph", {"file": "graph.npy", "k": 8})
    assert DenseIndex.open(tmp_path / "ix").structures == {"graph": {"file": "graph.npy", "k": 8}}
    assert DenseIndex.open(tmp_path / "ix").meta["encoder"] == "enc-a"
