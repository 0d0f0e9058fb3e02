"""Joining shard indexes (``--shard-id/--shard-num`` runs of the encoder) into one index."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Union

from ._export import export_parquet
from ._format import IndexMismatchError
from ._reader import DenseIndex
from ._writer import IndexWriter

logger = logging.getLogger(__name__)

# Settings every shard must share; a difference means the vectors are not comparable.
SHARED_KEYS = ("encoder_fingerprint", "document_fingerprint", "dimension", "dtype", "pooling", "max_length", "bf16")
_ROWS = 65536


def merge_indexes(shards: Sequence[Union[str, Path]], out_dir: Union[str, Path], *, overwrite: bool = False) -> Path:
    """Join shard indexes into ``out_dir`` (atomically).

    Shards that record ``meta["shard"]`` (as the encode CLI writes) are put in shard order and must be the
    complete set 0..num-1 of one corpus; others are joined in the order given.  Every shard must share the
    encoder fingerprint, dimension, storage dtype, pooling, max length and precision (IndexMismatchError).
    """
    if not shards:
        raise ValueError("no shards to merge")
    indexes = [DenseIndex.open(path) for path in shards]
    first = indexes[0]
    for index in indexes[1:]:
        for key in SHARED_KEYS:
            if index.meta.get(key) != first.meta.get(key):
                raise IndexMismatchError(f"{index.path}: {key} is {index.meta.get(key)!r}, but {first.path} has "
                                         f"{first.meta.get(key)!r}; shards must come from the same encoder run")
    infos = [index.meta.get("shard") for index in indexes]
    if all(infos):
        indexes = [index for _, index in sorted(zip([i["id"] for i in infos], indexes), key=lambda p: p[0])]
        infos = [index.meta["shard"] for index in indexes]
        num = infos[0]["num"]
        if [i["id"] for i in infos] != list(range(num)) or any(i["num"] != num for i in infos):
            raise ValueError(f"shards {[i['id'] for i in infos]} of {num}: need each shard id 0..{num - 1} once")
        if any(i.get("corpus") != infos[0].get("corpus") for i in infos):
            raise ValueError("the shards were encoded from different corpora")
    elif any(infos):
        raise ValueError("some shards record shard numbers and some do not; merge shards of one run")
    meta = {k: v for k, v in first.meta.items()
            if k not in ("shard", "structures", "format", "version", "dimension", "dtype", "num_docs")}
    on_complete = None
    if all(index.meta.get("parquet") for index in indexes):  # the shards' Parquet export, redone for the whole
        on_complete = lambda tmp: export_parquet(tmp, tmp / meta["parquet"])
    else:
        meta.pop("parquet", None)
    with IndexWriter(out_dir, dimension=first.dimension, meta=meta, storage_dtype=first.storage_dtype,
                     overwrite=overwrite, on_complete=on_complete) as writer:
        for index in indexes:
            # the float32 originals (always in the faiss file), so 16-bit storage is rounded exactly once
            for start in range(0, index.num_docs, _ROWS):
                writer.add(index.docids[start:start + _ROWS], index.faiss_vectors.numpy(start, start + _ROWS))
    logger.info("merged %d shards into %s", len(indexes), out_dir)
    return Path(out_dir)
