"""Joining shard indexes (``--shard-id/--shard-num`` runs of the encoder) into one index."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Union

from ._export import export_parquet
from ._reader import DenseIndex
from ._sharded import order_shards
from ._writer import IndexWriter

logger = logging.getLogger(__name__)

_ROWS = 65536


def merge_indexes(shards: Sequence[Union[str, Path]], out_dir: Union[str, Path], *, overwrite: bool = False) -> Path:
    """Join shard indexes into ``out_dir`` (atomically).

    Shards that record ``meta["shard"]`` (as the encode CLI writes) are put in shard order and must be the
    complete set 0..num-1 of one corpus; others are joined in the order given.  Every shard must share the
    encoder fingerprint, dimension, storage dtype, pooling, max length and precision (IndexMismatchError).
    """
    if not shards:
        raise ValueError("no shards to merge")
    indexes = order_shards([DenseIndex.open(path) for path in shards])
    first = indexes[0]
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
