"""DenseIndex: an index directory opened for search, with the vectors memory-mapped (never read whole)."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Union

import numpy as np

from .._fsutil import write_json
from ._format import (DOCID_FILE, INDEX_FILE, META_FILE, VECTORS_FILE, IndexFormatError, IndexMismatchError,
                      read_flat_ip_header, read_meta)
from .vectors import Vectors

logger = logging.getLogger(__name__)


def _read_docids(path: Path) -> List[str]:
    if not path.is_file():
        raise IndexFormatError(f"{path.parent}: index directory lacks the {path.name} file")
    try:
        with open(path, encoding="utf-8") as f:
            return [line.rstrip("\n").rstrip() for line in f]  # Pyserini right-strips each line
    except (OSError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path}: unreadable docid file ({exc})") from None


def map_faiss(file: Path, n: int, d: int) -> np.ndarray:
    """The (n, d) float32 rows of a faiss ``IndexFlatIP`` file as a read-only memory map (IndexFormatError if the
    file is missing or holds another shape)."""
    if not file.is_file():
        raise IndexFormatError(f"{file.parent}: index directory lacks the {file.name} file (faiss IndexFlatIP)")
    fd, fn, offset = read_flat_ip_header(file)
    if (fd, fn) != (d, n):
        raise IndexFormatError(f"{file}: faiss index holds {fn} x {fd} vectors, meta.json says {n} x {d}")
    if n == 0:
        return np.zeros((0, d), dtype=np.float32)
    return np.memmap(file, dtype=np.float32, mode="r", offset=offset, shape=(n, d))


def _map_npy(file: Path, n: int, d: int, dtype: str) -> np.ndarray:
    if not file.is_file():
        raise IndexFormatError(f"{file.parent}: index directory lacks the {file.name} file ({dtype} vectors)")
    try:
        vectors = np.load(file, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexFormatError(f"{file}: unreadable vectors file ({exc})") from None
    expected = np.dtype(np.float16 if dtype == "float16" else np.uint16)
    if vectors.dtype != expected or vectors.shape != (n, d):
        raise IndexFormatError(f"{file}: holds {vectors.dtype} {vectors.shape}, meta.json says {dtype} ({n}, {d})")
    return vectors


class DenseIndex:
    """An index directory: ``docids``, ``meta`` and the (N, d) document vectors.

    ``vectors`` (:class:`~.vectors.Vectors`) reads the searched vectors from a read-only memory map: float32 rows
    inside the faiss ``index`` file, or ``vectors.npy`` (float16, or uint16 bfloat16 bits) for 16-bit storage.
    ``faiss_vectors`` are the float32 rows of the faiss file (the same as ``vectors`` for float32 storage).
    """

    def __init__(self, path: Path, meta: Dict, docids: List[str], vectors: np.ndarray,
                 faiss_vectors: Optional[np.ndarray] = None):
        self.path = Path(path)
        self.meta = meta
        self.docids = docids
        self.vectors = Vectors(vectors)
        self.faiss_vectors = self.vectors if faiss_vectors is None else Vectors(faiss_vectors)
        self._rows: Optional[Dict[str, int]] = None
        self._cache: Dict[str, Any] = {}

    # -- opening -----------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Union[str, Path], *, mmap: bool = True) -> "DenseIndex":
        """Open an index directory; ``mmap=False`` reads the vectors into memory.  IndexFormatError if malformed."""
        path = Path(path).expanduser()
        if not path.exists():
            raise IndexFormatError(f"{path}: no such index directory")
        if not path.is_dir():
            raise IndexFormatError(f"{path}: an index must be a directory, not a file")
        meta = read_meta(path)
        n, d, dtype = meta["num_docs"], meta["dimension"], meta["dtype"]
        docids = _read_docids(path / DOCID_FILE)
        if len(docids) != n:
            raise IndexFormatError(f"{path / DOCID_FILE}: {len(docids)} docids, but meta.json says {n} documents")
        faiss_vectors = map_faiss(path / INDEX_FILE, n, d)  # always there: what Pyserini's FAISS tools read
        vectors = faiss_vectors if dtype == "float32" else _map_npy(path / VECTORS_FILE, n, d, dtype)
        if not mmap:
            vectors = np.array(vectors)
        return cls(path, meta, docids, vectors, None if dtype == "float32" else faiss_vectors)

    # -- properties --------------------------------------------------------------------------------
    @property
    def num_docs(self) -> int:
        return len(self.docids)

    def __len__(self) -> int:
        return self.num_docs

    @property
    def dimension(self) -> int:
        return int(self.meta["dimension"])

    @property
    def storage_dtype(self) -> str:
        return str(self.meta["dtype"])

    @property
    def structures(self) -> Dict:
        """ANN structures recorded in meta.json (name -> description), e.g. ``{"graph": {...}}``."""
        return dict(self.meta.get("structures") or {})

    def __repr__(self) -> str:
        return (f"DenseIndex({str(self.path)!r}, num_docs={self.num_docs}, dimension={self.dimension}, "
                f"dtype={self.storage_dtype!r}, encoder={self.meta.get('encoder')!r})")

    # -- reading -----------------------------------------------------------------------------------
    def rows_for(self, docids: Iterable[str]) -> np.ndarray:
        """Row positions of ``docids`` as int64, -1 where a docid is not in the index."""
        if self._rows is None:
            self._rows = {docid: i for i, docid in enumerate(self.docids)}
        rows = self._rows
        return np.fromiter((rows.get(str(docid), -1) for docid in docids), dtype=np.int64)

    # -- checks and updates ------------------------------------------------------------------------
    def check_encoder(self, encoder_name: Optional[str], fingerprint: Optional[str], *, force: bool = False,
                      dimension: Optional[int] = None,
                      document_fingerprint: Union[str, Callable[[], Optional[str]], None] = None) -> None:
        """IndexMismatchError (naming both sides) if the index's vectors came from other weights, unless ``force``.

        Weights are compared by fingerprint (so the same model under another path matches).  A model with other
        query-side weights but the same document side (``document_fingerprint``: passage backbone and pooling,
        e.g. a Hypencoder trained on a frozen backbone) produces the same document vectors and is accepted; it may
        be given as a function, called only when the full fingerprints differ.  A dimension mismatch is always an
        error: the vectors cannot be scored by that model at all.
        """
        if dimension is not None and int(dimension) != self.dimension:
            raise IndexMismatchError(f"{self.path}: the index holds {self.dimension}-d vectors, but the encoder "
                                     f"{encoder_name!r} produces {dimension}-d vectors")
        built_name, built_print = self.meta.get("encoder"), self.meta.get("encoder_fingerprint")
        if not fingerprint or not built_print or fingerprint == built_print:
            return
        built_docs = self.meta.get("document_fingerprint")
        if callable(document_fingerprint):
            document_fingerprint = document_fingerprint() if built_docs else None
        if built_docs and document_fingerprint == built_docs:
            logger.info("%s: built with encoder %r; %r has the same document side (fingerprint %s)", self.path,
                        built_name, encoder_name, built_docs)
            return
        message = (f"{self.path}: the index was built with encoder {built_name!r} (fingerprint {built_print}), "
                   f"not {encoder_name!r} (fingerprint {fingerprint}), and their document sides differ")
        if force:
            logger.warning("%s; searching anyway (forced)", message)
            return
        raise IndexMismatchError(message + "; pass the matching encoder, or --force (force=True) to search anyway")

    # -- structures added by ``python -m pyserini_hypencoder.index --add NAME`` ---------------------------------
    def add_command(self, name: str) -> str:
        return f"python -m pyserini_hypencoder.index --index {self.path} --add {name}"

    def has_structure(self, name: str) -> bool:
        """Whether meta.json records structure ``name`` and its file exists."""
        file = (self.structures.get(name) or {}).get("file")
        return bool(file) and (self.path / file).is_file()

    def structure_file(self, name: str) -> Path:
        """The file of structure ``name``; a ValueError naming the command that adds it when there is none."""
        if not self.has_structure(name):
            raise ValueError(f"{self.path}: the index has no {name} structure; add it with: {self.add_command(name)}")
        return self.path / self.structures[name]["file"]

    def record_structure(self, name: str, info: Dict) -> None:
        """Record a structure (its ``file`` and parameters) under meta.json ``"structures"`` (atomic rewrite)."""
        meta = {**self.meta, "structures": {**self.structures, name: info}}
        write_json(self.path / META_FILE, meta)
        self.meta = meta
        self._cache.clear()

    def cached(self, key: str, load: Callable[[], Any]) -> Any:
        """``load()``'s result, computed once per index object (loaded structures)."""
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]
