"""The index directory: Pyserini's ``index`` (faiss IndexFlatIP) + ``docid``, plus ``meta.json`` and optional
16-bit ``vectors.npy``; opened memory-mapped by :class:`DenseIndex` (its vectors read through :class:`Vectors`),
written atomically by :class:`IndexWriter`.  See docs/encoding.md for the format.

Names are imported on first use, so CLIs that only need the format constants start without torch.
"""
from .._lazy import lazy_exports
from ._format import (DOCID_FILE, FORMAT, INDEX_FILE, META_FILE, STORAGE_DTYPES, VECTORS_FILE, VERSION,
                      IndexFormatError, IndexMismatchError)

_EXPORTS = {"DenseIndex": "._reader", "IndexWriter": "._writer", "write_index": "._writer",
            "check_target": "._writer", "partial_dir_for": "._writer", "merge_indexes": "._merge",
            "export_parquet": "._export", "to_storage": "._format", "Vectors": ".vectors", "as_vectors": ".vectors",
            "decode": ".vectors", "ShardedIndex": "._sharded", "open_index": "._sharded",
            "ConcatRows": "._sharded", "order_shards": "._sharded"}
__all__ = sorted(_EXPORTS) + ["DOCID_FILE", "FORMAT", "INDEX_FILE", "META_FILE", "STORAGE_DTYPES", "VECTORS_FILE",
                              "VERSION", "IndexFormatError", "IndexMismatchError"]

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
