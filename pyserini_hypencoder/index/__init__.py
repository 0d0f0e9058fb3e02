"""The index directory: Pyserini's ``index`` (faiss IndexFlatIP) + ``docid``, plus ``meta.json`` and optional
16-bit ``vectors.npy``; opened memory-mapped by :class:`DenseIndex` (its vectors read through :class:`Vectors`),
written atomically by :class:`IndexWriter`.  See docs/encoding.md for the format."""
from ._export import export_parquet
from ._format import (DOCID_FILE, FORMAT, INDEX_FILE, META_FILE, STORAGE_DTYPES, VECTORS_FILE, VERSION,
                      IndexFormatError, IndexMismatchError, to_storage)
from ._merge import merge_indexes
from ._reader import DenseIndex
from ._writer import IndexWriter, check_target, partial_dir_for, write_index
from .vectors import Vectors, as_vectors, decode
