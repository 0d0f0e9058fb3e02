"""IndexWriter: builds an index directory chunk by chunk beside the target and renames it into place when complete."""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .._fsutil import atomic_file, replace_directory, write_json
from ._format import DOCID_FILE, FORMAT, INDEX_FILE, META_FILE, VECTORS_FILE, VERSION, check_dtype, flat_ip_header, \
    to_storage

logger = logging.getLogger(__name__)

PARTIAL_FILE = "partial.json"
_COPY_ROWS = 65536  # rows per read when assembling the final files


def partial_dir_for(out_dir: Path) -> Path:
    """The temporary directory a writer for ``out_dir`` builds in (hidden, beside the target)."""
    return out_dir.parent / f".{out_dir.name}.partial"


def check_target(out_dir: Path, *, overwrite: bool) -> None:
    """FileExistsError unless ``out_dir`` is absent, an empty directory, or ``overwrite`` is set."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir}: exists and is not a directory")
        if any(out_dir.iterdir()) and not overwrite:
            raise FileExistsError(f"{out_dir}: exists and is not empty (pass --overwrite to replace it)")


class IndexWriter:
    """Writes an index directory; use as a context manager and call ``add(docids, float32 (N, d) vectors)`` per
    chunk.  ``meta`` holds the encoder settings (the writer adds format, version, dimension, dtype, num_docs).

    With ``resume_key`` (a JSON-able description of the run) an interrupted run keeps its completed chunks, and a
    writer with the same key, meta, dimension and dtype continues after them (``num_added`` documents done).
    ``on_complete(tmp_dir)`` runs on the complete index before it is renamed into place (e.g. a Parquet export).
    """

    def __init__(self, out_dir: Union[str, Path], *, dimension: int, meta: Optional[Dict] = None,
                 storage_dtype: str = "float32", overwrite: bool = False, resume_key=None,
                 on_complete: Optional[Callable[[Path], None]] = None):
        self.out_dir = Path(out_dir).expanduser()
        self.dimension = int(dimension)
        if self.dimension <= 0:
            raise ValueError(f"dimension must be positive, got {dimension}")
        self.storage_dtype = check_dtype(storage_dtype)
        self.meta = dict(meta or {})
        self.overwrite = bool(overwrite)
        self.resumable = resume_key is not None
        self.on_complete = on_complete
        self._state = {"dimension": self.dimension, "storage_dtype": self.storage_dtype, "meta": self.meta,
                       "resume_key": resume_key}
        self.tmp_dir = partial_dir_for(self.out_dir)
        self._counts: List[int] = []   # documents per completed chunk, chunk i in chunk-{i:06d}.*
        self._open = False
        self.resumed_chunks = 0
        check_target(self.out_dir, overwrite=self.overwrite)

    # -- state -------------------------------------------------------------------------------------
    @property
    def num_added(self) -> int:
        """Documents in completed chunks (after a resume: including those written by the earlier run)."""
        return int(sum(self._counts))

    def _chunk_paths(self, number: int):
        return self.tmp_dir / f"chunk-{number:06d}.npy", self.tmp_dir / f"chunk-{number:06d}.docid"

    def open(self) -> "IndexWriter":
        if self._open:
            return self
        if self.tmp_dir.exists():
            changed = self._changed_settings()
            if self.resumable and not changed:
                self._load_chunks()
            elif self.resumable and not self.overwrite:
                raise FileExistsError(f"{self.tmp_dir}: an unfinished run with other settings is there "
                                      f"({'; '.join(changed)}); rerun it with its settings to resume, or pass "
                                      f"--overwrite to start afresh")
            else:
                shutil.rmtree(self.tmp_dir)
        if not self.tmp_dir.exists():
            self.tmp_dir.parent.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir()
            write_json(self.tmp_dir / PARTIAL_FILE, self._state)
        self._open = True
        return self

    def _changed_settings(self) -> List[str]:
        """``setting: then -> now`` for each setting of the unfinished run that differs from this writer's."""
        try:
            then = json.loads((self.tmp_dir / PARTIAL_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ["its settings file is unreadable"]
        now = json.loads(json.dumps(self._state))   # through JSON, so tuples and lists compare equal
        flat = lambda state: {**{k: v for k, v in state.items() if not isinstance(v, dict)},   # noqa: E731
                              **{k: v for part in ("meta", "resume_key") for k, v in (state.get(part) or {}).items()}}
        then, now = flat(then), flat(now)
        return [f"{key}: {then.get(key)!r} then, {now.get(key)!r} now" for key in sorted(set(then) | set(now))
                if then.get(key) != now.get(key)]

    def _load_chunks(self) -> None:
        while all(path.is_file() for path in self._chunk_paths(len(self._counts))):
            with open(self._chunk_paths(len(self._counts))[1], encoding="utf-8") as f:
                self._counts.append(sum(1 for _ in f))
        number = self.resumed_chunks = len(self._counts)
        for stray in self.tmp_dir.iterdir():  # half-written files of the interrupted chunk
            if stray.name.startswith(".") or (stray.name.startswith("chunk-") and int(stray.name[6:12]) >= number):
                stray.unlink()
        if number:
            logger.info("resuming %s: %d chunks (%d documents) already written", self.tmp_dir, number,
                        self.num_added)

    # -- writing -----------------------------------------------------------------------------------
    def add(self, docids: Sequence[str], vectors) -> None:
        """Write one chunk: ``len(docids)`` rows of float32 (N, d) vectors (numpy or torch)."""
        if not self._open:
            self.open()
        if hasattr(vectors, "detach"):
            vectors = vectors.detach().float().cpu().numpy()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        docids = [str(d) for d in docids]
        if vectors.ndim != 2 or vectors.shape[1] != self.dimension:
            raise ValueError(f"expected ({len(docids)}, {self.dimension}) vectors, got {vectors.shape}")
        if vectors.shape[0] != len(docids):
            raise ValueError(f"{len(docids)} docids for {vectors.shape[0]} vectors")
        for docid in docids:
            if not docid or any(c.isspace() for c in docid):
                raise ValueError(f"docid {docid!r} is empty or contains whitespace (TREC run columns are "
                                 f"whitespace-separated)")
        if not np.isfinite(vectors).all():
            raise ValueError("vectors contain NaN or infinite values")
        vec_path, id_path = self._chunk_paths(len(self._counts))
        with atomic_file(vec_path, "wb") as f:
            np.save(f, vectors, allow_pickle=False)
        with atomic_file(id_path) as f:  # the docid file last: a chunk is complete once it exists
            f.write("".join(d + "\n" for d in docids))
        self._counts.append(len(docids))

    # -- finishing ---------------------------------------------------------------------------------
    def close(self) -> Path:
        """Assemble the final files and rename the directory into place; returns the index path."""
        if not self._open:
            self.open()
        n, d = self.num_added, self.dimension
        tmp = self.tmp_dir
        docids = self._write_docids(tmp / DOCID_FILE)
        seen = set()
        for docid in docids:
            if docid in seen:
                raise ValueError(f"duplicate docid {docid!r}: every document needs a distinct id")
            seen.add(docid)
        with open(tmp / INDEX_FILE, "wb") as f:
            f.write(flat_ip_header(d, n))
            for vectors in self._iter_chunks():
                f.write(vectors.tobytes())
        if self.storage_dtype != "float32":
            np_dtype = np.float16 if self.storage_dtype == "float16" else np.uint16
            out = np.lib.format.open_memmap(tmp / VECTORS_FILE, mode="w+", dtype=np_dtype, shape=(n, d))
            row = 0
            for vectors in self._iter_chunks():
                for start in range(0, len(vectors), _COPY_ROWS):
                    part = vectors[start:start + _COPY_ROWS]
                    out[row:row + len(part)] = to_storage(part, self.storage_dtype)
                    row += len(part)
            out.flush()
            del out
        meta = dict(self.meta)
        meta.update(format=FORMAT, version=VERSION, dimension=d, dtype=self.storage_dtype, num_docs=n)
        write_json(tmp / META_FILE, meta)
        if self.on_complete is not None:
            self.on_complete(tmp)  # before the chunks go, so a failure here can still be resumed
        for number in range(len(self._counts)):
            for path in self._chunk_paths(number):
                path.unlink()
        (tmp / PARTIAL_FILE).unlink()
        check_target(self.out_dir, overwrite=self.overwrite)  # it may have appeared meanwhile
        replace_directory(self.tmp_dir, self.out_dir)
        self._open = False
        logger.info("wrote %s: %d documents, %d-d, %s", self.out_dir, n, d, self.storage_dtype)
        return self.out_dir

    def _write_docids(self, path: Path) -> List[str]:
        docids: List[str] = []
        with open(path, "w", encoding="utf-8") as out:
            for number in range(len(self._counts)):
                with open(self._chunk_paths(number)[1], encoding="utf-8") as f:
                    for line in f:
                        out.write(line)
                        docids.append(line.rstrip("\n"))
        return docids

    def _iter_chunks(self):
        for number in range(len(self._counts)):
            yield np.load(self._chunk_paths(number)[0], mmap_mode="r", allow_pickle=False)

    def abort(self) -> None:
        """Remove the temporary directory; a resumable writer keeps it for the next run when it holds a completed
        chunk (with none there is nothing to resume)."""
        if self.tmp_dir.exists() and not (self.resumable and self._counts):
            shutil.rmtree(self.tmp_dir, ignore_errors=True)
        self._open = False

    def __enter__(self) -> "IndexWriter":
        return self.open()

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            try:
                self.close()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
        return False


def write_index(out_dir: Union[str, Path], docids: Sequence[str], vectors, meta: Optional[Dict] = None,
                storage_dtype: str = "float32", *, overwrite: bool = False) -> Path:
    """Write a whole index at once (atomically)."""
    vectors = vectors.detach().float().cpu().numpy() if hasattr(vectors, "detach") else np.asarray(vectors)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (N, d), got shape {vectors.shape}")
    with IndexWriter(out_dir, dimension=vectors.shape[1], meta=meta, storage_dtype=storage_dtype,
                     overwrite=overwrite) as writer:
        writer.add(docids, vectors)
    return Path(out_dir)
