"""Streaming corpus reading on top of Pyserini's ``JsonlCollectionIterator`` field parsing.

Pyserini's iterator reads the whole corpus into lists before it shards (and cannot read gzip).  This reader
keeps its record conventions (docid from ``--docid-field`` or ``id``/``_id``/``docid``; ``--fields`` taken from
the record or split out of ``contents`` by ``--delimiter``) but streams the files, reads ``.gz`` too, and yields
only a contiguous slice for a shard.  A first pass (``scan``) counts and validates every record, so bad input is
reported before anything is encoded.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from .._compat import JsonlCollectionIterator
from tqdm import tqdm

from ..encoders import document_text, join_title
from ..runfiles import iter_jsonl

logger = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")


@dataclass(frozen=True)
class Shard:
    """Shard ``id`` of ``num``: documents [start, stop) of a corpus of ``total`` (balanced contiguous slices)."""
    id: int
    num: int
    total: int

    @property
    def start(self) -> int:
        return self.total * self.id // self.num

    @property
    def stop(self) -> int:
        return self.total * (self.id + 1) // self.num

    @property
    def size(self) -> int:
        return self.stop - self.start


def check_shard(shard_id: int, shard_num: int) -> None:
    if shard_num < 1:
        raise ValueError(f"--shard-num must be at least 1, got {shard_num}")
    if not 0 <= shard_id < shard_num:
        raise ValueError(f"--shard-id must lie in 0..{shard_num - 1} for --shard-num {shard_num}, got {shard_id}")


def corpus_files(path: Path) -> List[Path]:
    """The corpus file, or the JSONL files (``.jsonl``/``.json``, optionally ``.gz``) of a folder, sorted by name."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such corpus file or folder")
    if path.is_file():
        return [path]
    files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")
                   and p.name.endswith(CORPUS_SUFFIXES))
    if not files:
        raise ValueError(f"{path}: folder holds no corpus files ({', '.join(CORPUS_SUFFIXES)})")
    return files


class JsonlCorpus(JsonlCollectionIterator):
    """A JSONL corpus (file or folder, plain or gzip) in Pyserini's ``id``/``contents`` or BEIR's
    ``_id``/``title``/``text`` form, read as (docid, text) pairs.

    ``fields=None`` (the default) takes BEIR records as ``title + " " + text`` (stripped, as the model was
    trained) and Pyserini records as their whole ``contents``.  Explicit ``fields`` follow Pyserini's parsing
    exactly; a ``title`` field is then joined in front of the others.
    """

    def __init__(self, collection_path, fields: Optional[Sequence[str]] = None, docid_field: Optional[str] = None,
                 delimiter: str = "\n"):
        # Deliberately not calling JsonlCollectionIterator.__init__: it loads the whole corpus.
        self.path = Path(collection_path).expanduser()
        self.files = corpus_files(self.path)
        self.collection_dir = str(self.path if self.path.is_dir() else self.path.parent)
        self.auto_fields = not fields
        self.fields = list(fields) if fields else ["title", "text"]
        self.docid_field = docid_field
        self.delimiter = delimiter.replace("\\n", "\n").replace("\\t", "\t")  # a literal \n, as Pyserini
        self.size: Optional[int] = None
        self.empty_docids: List[str] = []   # documents with empty text, found by scan()

    # -- identity, for resuming ----------------------------------------------------------------------
    def fingerprint(self) -> List:
        """Paths, sizes and modification times of the files (changes invalidate a partial run)."""
        return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in self.files]

    def settings(self) -> dict:
        return {"path": str(self.path), "fields": None if self.auto_fields else self.fields,
                "docid_field": self.docid_field, "delimiter": self.delimiter}

    # -- reading ---------------------------------------------------------------------------------------
    def _record(self, info, where: str) -> Tuple[str, str]:
        if not isinstance(info, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(info).__name__}")
        if self.docid_field:
            docid = info.get(self.docid_field)
        else:
            docid = info.get("id", info.get("_id", info.get("docid")))
        if docid is None or str(docid).strip() == "":
            wanted = repr(self.docid_field) if self.docid_field else "'id', '_id' or 'docid'"
            raise ValueError(f"{where}: record has no {wanted} field")
        if self.auto_fields:  # BEIR title + text, or Pyserini contents (after a title), as reranking reads them
            for name in ("title", "text", "contents"):
                if info.get(name) is not None and not isinstance(info[name], str):
                    raise ValueError(f"{where}: field {name!r} is not a string")
            try:
                return str(docid).strip(), document_text(info)
            except ValueError:
                raise ValueError(f"{where}: record has none of the fields 'title', 'text' or 'contents'") from None
        if not self.auto_fields and not all(f in info for f in self.fields) and "contents" not in info:
            missing = [f for f in self.fields if f not in info]
            raise ValueError(f"{where}: record lacks field(s) {', '.join(map(repr, missing))} and has no 'contents'")
        values = self._parse_fields_from_info(info, strict=not self.auto_fields)
        if len(values) != len(self.fields):
            raise ValueError(f"{where}: {len(values)} field(s) found in 'contents' split by {self.delimiter!r}, "
                             f"{len(self.fields)} expected ({' '.join(self.fields)})")
        for name, value in zip(self.fields, values):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"{where}: field {name!r} is not a string")
        fields = dict(zip(self.fields, values))
        title = fields.pop("title", None)
        body = " ".join(v for v in fields.values() if v)
        return str(docid).strip(), join_title(title, body)

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        """Every (docid, text) of the corpus, in file order."""
        for file in self.files:
            try:
                for where, info in iter_jsonl(file):
                    yield self._record(info, where)
            except (OSError, EOFError, UnicodeDecodeError) as exc:
                raise ValueError(f"{file}: cannot read corpus file ({exc})") from None

    def scan(self, *, progress: bool = False) -> int:
        """Read every record once: count them, and raise ValueError on bad records or duplicate docids."""
        seen = set()
        count = 0
        empty: List[str] = []
        for docid, text in tqdm(self, desc="scan corpus", unit="doc", disable=not progress, leave=False):
            if docid in seen:
                raise ValueError(f"{self.path}: duplicate docid {docid!r}")
            seen.add(docid)
            count += 1
            if not text.strip():
                empty.append(docid)
        if count == 0:
            raise ValueError(f"{self.path}: the corpus holds no documents")
        if empty:
            logger.warning("%d document(s) have empty text (e.g. %s); they are encoded all the same (Pyserini's "
                           "Lucene indexer skips such documents)", len(empty), ", ".join(empty[:3]))
        self.size = count
        self.empty_docids = empty
        return count

    def slice(self, start: int, stop: int) -> Iterator[Tuple[str, str]]:
        """(docid, text) of documents [start, stop), streamed (the records before ``start`` are only skipped)."""
        for position, record in enumerate(self):
            if position >= stop:
                return
            if position >= start:
                yield record
