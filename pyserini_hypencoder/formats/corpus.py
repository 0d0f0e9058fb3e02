"""Corpora: JSONL files read as (docid, text) pairs, document text by docid, and Pyserini's JsonCollection written.

:class:`JsonlCorpus`, the one corpus reader, keeps the record conventions of Pyserini's ``JsonlCollectionIterator``
(docid from ``--docid-field`` or ``id``/``_id``/``docid``; ``--fields`` from the record or split out of
``contents`` by ``--delimiter``) but streams the files, reads ``.gz`` too and can read a shard's slice.
"""
from __future__ import annotations

import gzip
import json
import logging
from itertools import islice
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from tqdm import tqdm

from .._fsutil import atomic_file
from .text import is_gzip, iter_jsonl

logger = logging.getLogger(__name__)

CORPUS_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz")
DOCID_KEYS = ("id", "_id", "docid")


def join_title(title: Optional[str], text: str) -> str:
    """Title and body joined as in training: ``"title text"``, stripped (no title: the text alone)."""
    return f"{title} {text}".strip() if title else (text or "").strip()


def document_text(obj: dict) -> str:
    """Text to encode for a corpus record: BEIR ``title`` + ``text`` (joined as in training) or Pyserini
    ``contents`` (after the ``title`` when there is one)."""
    title = str(obj.get("title") or "")
    for field in ("text", "contents"):
        if field in obj:
            return join_title(title, str(obj[field] or ""))
    if title:
        return title.strip()
    raise ValueError("record has neither text nor contents")


def corpus_files(path: Path) -> List[Path]:
    """The corpus file, or the JSONL files (``.jsonl``/``.json``, optionally ``.gz``) of a folder, sorted by name
    (hidden files skipped)."""
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


class JsonlCorpus:
    """A JSONL corpus (file or folder, plain or gzip) read as (docid, text) pairs in file order.  ``fields=None``
    takes BEIR records as ``title + " " + text`` (as the model was trained) and Pyserini records as their
    ``contents``; explicit ``fields`` follow Pyserini's parsing, a ``title`` field joined in front of the others."""

    def __init__(self, collection_path, fields: Optional[Sequence[str]] = None, docid_field: Optional[str] = None,
                 delimiter: str = "\n"):
        self.path = Path(collection_path).expanduser()
        self.files = corpus_files(self.path)
        self.auto_fields = not fields
        self.fields = list(fields) if fields else ["title", "text"]
        self.docid_field = docid_field
        self.delimiter = delimiter.replace("\\n", "\n").replace("\\t", "\t")  # a literal \n, as Pyserini
        self.size: Optional[int] = None
        self.empty_docids: List[str] = []   # documents with empty text, found by scan()
        self._offsets: Optional[Dict[str, Tuple[int, int]]] = None   # docid -> (file, byte offset), see document()

    # -- identity, for resuming ----------------------------------------------------------------------
    def fingerprint(self) -> List:
        """Paths, sizes and modification times of the files (changes invalidate a partial run)."""
        return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in self.files]

    def settings(self) -> dict:
        """What reads this corpus again (recorded in an index's meta.json: ``JsonlCorpus(**settings)``)."""
        return {"path": str(self.path), "resolved": str(self.path.resolve()),
                "fields": None if self.auto_fields else self.fields, "docid_field": self.docid_field,
                "delimiter": self.delimiter}

    @classmethod
    def from_settings(cls, settings: dict) -> "JsonlCorpus":
        """The corpus a meta.json records (its absolute path first, then the path as given)."""
        path = next((p for p in (settings.get("resolved"), settings.get("path")) if p and Path(p).exists()), None)
        if path is None:
            raise FileNotFoundError(f"{settings.get('path')}: the recorded corpus is not there any more")
        return cls(path, fields=settings.get("fields"), docid_field=settings.get("docid_field"),
                   delimiter=settings.get("delimiter", "\n"))

    # -- reading ---------------------------------------------------------------------------------------
    def _parse_fields(self, info: dict) -> List[Optional[str]]:
        """Pyserini's own field parsing (``JsonlCollectionIterator._parse_fields_from_info``), imported only when
        explicit fields are used."""
        from .._compat import JsonlCollectionIterator
        return JsonlCollectionIterator._parse_fields_from_info(self, info, strict=True)

    def _record(self, info, where: str) -> Tuple[str, str]:
        if not isinstance(info, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(info).__name__}")
        if self.docid_field:
            docid = info.get(self.docid_field)
        else:
            docid = next((info[k] for k in DOCID_KEYS if k in info), None)
        if docid is None or str(docid).strip() == "":
            wanted = repr(self.docid_field) if self.docid_field else "'id', '_id' or 'docid'"
            raise ValueError(f"{where}: record has no {wanted} field")
        if self.auto_fields:  # BEIR title + text, or Pyserini contents (after a title)
            for name in ("title", "text", "contents"):
                if info.get(name) is not None and not isinstance(info[name], str):
                    raise ValueError(f"{where}: field {name!r} is not a string")
            try:
                return str(docid).strip(), document_text(info)
            except ValueError:
                raise ValueError(f"{where}: record has none of the fields 'title', 'text' or 'contents'") from None
        if not all(f in info for f in self.fields) and "contents" not in info:
            missing = ", ".join(repr(f) for f in self.fields if f not in info)
            raise ValueError(f"{where}: record lacks field(s) {missing}" +
                             ("" if "contents" in self.fields else " and has no 'contents' to split them from"))
        values = self._parse_fields(info)
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

    def _located(self) -> Iterator[Tuple[str, str, str]]:
        """(``file:line``, docid, text) of every record, in file order."""
        for file in self.files:
            try:
                for where, info in iter_jsonl(file):
                    yield (where, *self._record(info, where))
            except (OSError, EOFError, UnicodeDecodeError) as exc:
                raise ValueError(f"{file}: cannot read corpus file ({exc})") from None

    def __iter__(self) -> Iterator[Tuple[str, str]]:
        """Every (docid, text) of the corpus, in file order."""
        for _, docid, text in self._located():
            yield docid, text

    def _distinct(self, progress: bool = False) -> Iterator[Tuple[str, str]]:
        """``iter(self)`` with a ValueError naming the line of a docid seen before."""
        seen = set()
        for where, docid, text in tqdm(self._located(), desc="scan corpus", unit="doc", leave=False,
                                       disable=None if progress else True):   # None: no bar when not a terminal
            if docid in seen:
                raise ValueError(f"{where}: duplicate docid {docid!r}")
            seen.add(docid)
            yield docid, text

    def scan(self, *, progress: bool = False) -> int:
        """Read every record once: count them, and raise ValueError on bad records or duplicate docids."""
        count = 0
        empty: List[str] = []
        for docid, text in self._distinct(progress):
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

    def read(self) -> Tuple[List[str], List[str]]:
        """All docids and texts, in file order (ValueError on duplicate docids)."""
        docids, texts = [], []
        for docid, text in self._distinct():
            docids.append(docid)
            texts.append(text)
        return docids, texts

    def slice(self, start: int, stop: int) -> Iterator[Tuple[str, str]]:
        """(docid, text) of documents [start, stop), streamed (the records before ``start`` are only skipped)."""
        return islice(self, start, stop)

    def document(self, docid: str) -> Optional["Document"]:
        """The record of ``docid`` (None when the corpus lacks it), read from its place: an offset table of the
        corpus (built on the first call, one pass) is kept, not the corpus.  In a gzipped file the place is found
        by decompressing up to it."""
        if self._offsets is None:
            self._offsets = {}
            for number, file in enumerate(self.files):
                with (gzip.open(file, "rb") if is_gzip(file) else open(file, "rb")) as f:
                    for n, (offset, line) in enumerate(_lines_at(f), 1):
                        if line.strip():
                            docid_at, _ = self._record(json.loads(line.decode("utf-8-sig")), f"{file}:{n}")
                            self._offsets.setdefault(docid_at, (number, offset))
        place = self._offsets.get(str(docid))
        if place is None:
            return None
        file = self.files[place[0]]
        with (gzip.open(file, "rb") if is_gzip(file) else open(file, "rb")) as f:
            f.seek(place[1])
            raw = f.readline().decode("utf-8-sig").strip()
        return Document(str(docid), raw, self._record(json.loads(raw), str(file))[1])

    def texts(self, docids: Iterable[str]) -> Dict[str, str]:
        """``{docid: text}`` for the wanted ids found in the corpus (absent ids are not in the result); reads only
        until every wanted id was seen."""
        wanted = set(docids)
        found: Dict[str, str] = {}
        for docid, text in self:
            if docid in wanted and docid not in found:
                found[docid] = text
                if len(found) == len(wanted):
                    break
        return found


def _lines_at(f) -> Iterator[Tuple[int, bytes]]:
    while True:
        offset = f.tell()
        line = f.readline()
        if not line:
            return
        yield offset, line


class Document:
    """A corpus record, read like Pyserini's ``Document``: ``docid()``, ``raw()`` (the stored JSON record) and
    ``contents()`` (the text the encoder reads: title and text joined)."""

    def __init__(self, docid: str, raw: str, contents: str):
        self._docid, self._raw, self._contents = docid, raw, contents

    def docid(self) -> str:
        return self._docid

    def raw(self) -> str:
        return self._raw

    def contents(self) -> str:
        return self._contents

    def __repr__(self) -> str:
        return f"Document({self._docid!r}, {self._contents[:40]!r}...)"


class LuceneTexts:
    """Texts from a Pyserini Lucene index built with ``--storeRaw`` (``LuceneSearcher.doc(docid).raw()``)."""

    def __init__(self, index_dir: Union[str, Path]):
        self.path = Path(index_dir)
        if not self.path.is_dir():
            raise FileNotFoundError(f"{self.path}: Lucene index directory not found")
        import pyserini_hypencoder  # noqa: F401  (Java before Pyserini)
        from .._compat import LuceneSearcher
        try:
            self.searcher = LuceneSearcher(str(self.path))
        except Exception as exc:  # jnius.JavaException for a folder that is not a Lucene index
            raise ValueError(f"{self.path}: not a readable Lucene index ({str(exc).splitlines()[0]})") from None

    def document(self, docid: str) -> Optional[Document]:
        """The document (its raw JSON record read as a corpus record), None when the index lacks it."""
        doc = self.searcher.doc(docid)
        if doc is None:
            return None
        raw: Optional[str] = doc.raw()
        if raw:
            try:
                obj = json.loads(raw)
                return Document(docid, raw, document_text(obj) if isinstance(obj, dict) else str(obj))
            except (json.JSONDecodeError, ValueError):
                return Document(docid, raw, raw.strip())
        if doc.contents() is None:
            raise ValueError(f"{self.path}: document {docid} has no stored text; rebuild the Lucene index with "
                             f"--storeRaw")
        return Document(docid, doc.contents(), doc.contents().strip())

    def texts(self, docids: Iterable[str]) -> Dict[str, str]:
        found = {docid: self.document(docid) for docid in dict.fromkeys(docids)}
        return {docid: doc.contents() for docid, doc in found.items() if doc is not None}


def write_json_collection(records: Iterable[Tuple[str, str]], path) -> int:
    """(docid, text) pairs as Pyserini's JsonCollection ``{"id", "contents"}`` lines, atomically; returns the count."""
    count = 0
    with atomic_file(path) as f:
        for docid, text in records:
            f.write(json.dumps({"id": docid, "contents": text}) + "\n")
            count += 1
    return count
