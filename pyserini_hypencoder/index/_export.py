"""Exporting an index's document vectors to Parquet (pyarrow)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from .._fsutil import atomic_file
from ._reader import DenseIndex

_ROWS = 65536


def export_parquet(index: Union[DenseIndex, str, Path], path: Union[str, Path], *, rows_per_group: int = _ROWS
                   ) -> Path:
    """Write columns ``id`` (string) and ``vector`` (fixed-size list of float32) to a Parquet file.

    16-bit stored vectors are widened to float32.  Written in row groups, to a temporary name, then renamed.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not isinstance(index, DenseIndex):
        index = DenseIndex.open(index)
    path = Path(path).expanduser()
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), index.dimension))])
    with atomic_file(path, "wb") as f, pq.ParquetWriter(f, schema) as writer:
        for start in range(0, max(index.num_docs, 1), rows_per_group):
            stop = min(start + rows_per_group, index.num_docs)
            flat = index.vectors.numpy(start, stop).reshape(-1)
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, type=pa.float32()), index.dimension)
            ids = pa.array(index.docids[start:stop], type=pa.string())
            writer.write_table(pa.Table.from_arrays([ids, vectors], schema=schema))
    return path
