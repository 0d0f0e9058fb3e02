"""The on-disk layout of an index directory: file names, meta.json, the faiss IndexFlatIP header, dtypes.

An index directory holds ``index`` (a faiss ``IndexFlatIP`` with float32 vectors, what Pyserini's
``FaissSearcher`` loads), ``docid`` (line i = docid of row i) and ``meta.json``.  With a 16-bit storage dtype it
also holds ``vectors.npy`` (float16, or uint16 holding bfloat16 bits), which is what this plugin searches.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

FORMAT = "pyserini-hypencoder-index"
VERSION = 1
INDEX_FILE = "index"
DOCID_FILE = "docid"
META_FILE = "meta.json"
VECTORS_FILE = "vectors.npy"
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
REQUIRED_META = ("format", "version", "dimension", "dtype", "num_docs")

# faiss.write_index of an IndexFlatIP: fourcc "IxFI", d (int32), ntotal (int64), two dummies (int64),
# is_trained (uint8), metric_type (int32, 0 = inner product), then the codes as size (uint64, number of floats)
# followed by size float32 values.
FLAT_IP_FOURCC = b"IxFI"
_HEADER = struct.Struct("<4siqqqBiQ")
FLAT_HEADER_BYTES = _HEADER.size  # 45
_DUMMY = 1 << 20


class IndexFormatError(ValueError):
    """An index directory is missing a file or has a malformed one; the message names the path."""


class IndexMismatchError(ValueError):
    """An index was built by a different encoder than the one given (or has another dimension)."""


def check_dtype(storage_dtype: str) -> str:
    if storage_dtype not in STORAGE_DTYPES:
        raise ValueError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}, got {storage_dtype!r}")
    return storage_dtype


def flat_ip_header(dimension: int, ntotal: int) -> bytes:
    """The bytes faiss writes before the vectors of an ``IndexFlatIP`` of ``ntotal`` rows."""
    return _HEADER.pack(FLAT_IP_FOURCC, int(dimension), int(ntotal), _DUMMY, _DUMMY, 1, 0,
                        int(ntotal) * int(dimension))


def read_flat_ip_header(path: Path) -> Tuple[int, int, int]:
    """(dimension, ntotal, data offset) of a faiss ``IndexFlatIP`` file; IndexFormatError if it is not one."""
    try:
        with open(path, "rb") as f:
            raw = f.read(FLAT_HEADER_BYTES)
        size = os.path.getsize(path)
    except OSError as exc:
        raise IndexFormatError(f"{path}: cannot read the faiss index file ({exc.strerror})") from None
    if len(raw) < FLAT_HEADER_BYTES:
        raise IndexFormatError(f"{path}: truncated faiss index file ({size} bytes)")
    fourcc, d, ntotal, _, _, _, metric, nfloats = _HEADER.unpack(raw)
    if fourcc != FLAT_IP_FOURCC or metric != 0:
        raise IndexFormatError(f"{path}: not a faiss IndexFlatIP file (type {fourcc!r}); this plugin memory-maps "
                               f"flat inner-product indexes only")
    if d <= 0 or ntotal < 0 or nfloats != d * ntotal or size != FLAT_HEADER_BYTES + 4 * nfloats:
        raise IndexFormatError(f"{path}: inconsistent faiss index file (d={d}, ntotal={ntotal}, {size} bytes)")
    return d, ntotal, FLAT_HEADER_BYTES


def read_meta(directory: Path) -> Dict:
    path = directory / META_FILE
    if not path.is_file():
        raise IndexFormatError(f"{directory}: not an index directory ({META_FILE} is missing)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path}: unreadable meta.json ({exc})") from None
    if not isinstance(meta, dict):
        raise IndexFormatError(f"{path}: meta.json must hold a JSON object")
    missing = [key for key in REQUIRED_META if key not in meta]
    if missing:
        raise IndexFormatError(f"{path}: meta.json lacks {', '.join(missing)}")
    if meta["format"] != FORMAT:
        raise IndexFormatError(f"{path}: format is {meta['format']!r}, expected {FORMAT!r}")
    if meta["version"] != VERSION:
        raise IndexFormatError(f"{path}: index format version {meta['version']!r} is not supported "
                               f"(this plugin reads version {VERSION})")
    if meta["dtype"] not in STORAGE_DTYPES:
        raise IndexFormatError(f"{path}: unknown dtype {meta['dtype']!r} (expected one of {STORAGE_DTYPES})")
    for key in ("dimension", "num_docs"):
        if not isinstance(meta[key], int) or meta[key] < 0 or (key == "dimension" and meta[key] == 0):
            raise IndexFormatError(f"{path}: {key} must be a non-negative integer, got {meta[key]!r}")
    return meta


def to_storage(vectors: np.ndarray, storage_dtype: str) -> np.ndarray:
    """float32 (N, d) -> the stored representation: float32, float16, or uint16 bfloat16 bits (round to nearest)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    if storage_dtype == "float32":
        return vectors
    if storage_dtype == "float16":
        return vectors.astype(np.float16)
    import torch
    bits = torch.from_numpy(np.array(vectors, dtype=np.float32)).to(torch.bfloat16).view(torch.int16).numpy()
    return bits.view(np.uint16)
