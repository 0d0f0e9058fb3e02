"""Document text for candidates that an index lacks: a JSONL corpus or a Pyserini Lucene index's raw documents."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Dict, Iterable, Iterator, Optional, Union

from ..encoders import document_text
from ..runfiles import iter_jsonl

logger = logging.getLogger(__name__)

DOCID_KEYS = ("id", "_id", "docid")


class CorpusTexts:
    """Texts looked up in JSONL corpus files (a file or a folder of ``.jsonl``/``.jsonl.gz``/``.json``), in
    Pyserini's ``{"id", "contents"}`` or BEIR's ``{"_id", "title", "text"}`` form.  Only wanted ids are kept."""

    def __init__(self, path: Union[str, Path]):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path}: corpus not found")
        self.files = self._files()
        if not self.files:
            raise ValueError(f"{self.path}: no .jsonl/.json files in the corpus folder")

    def _files(self):
        if self.path.is_file():
            return [self.path]
        return sorted(p for p in self.path.iterdir()
                      if p.is_file() and (p.name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz"))))

    def _records(self) -> Iterator[tuple]:
        for file in self.files:
            for where, obj in iter_jsonl(file):
                docid = next((obj[k] for k in DOCID_KEYS if k in obj), None)
                if docid is None:
                    raise ValueError(f"{where}: no document id (one of {', '.join(DOCID_KEYS)})")
                yield str(docid), obj, where

    def texts(self, docids: Iterable[str]) -> Dict[str, str]:
        """``{docid: text}`` for the wanted ids found in the corpus (absent ids are simply not in the result)."""
        wanted = set(docids)
        found: Dict[str, str] = {}
        for docid, obj, where in self._records():
            if docid in wanted and docid not in found:
                try:
                    found[docid] = document_text(obj)
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
                if len(found) == len(wanted):
                    break
        return found


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

    def texts(self, docids: Iterable[str]) -> Dict[str, str]:
        found: Dict[str, str] = {}
        for docid in dict.fromkeys(docids):
            doc = self.searcher.doc(docid)
            if doc is None:
                continue
            raw: Optional[str] = doc.raw()
            text = None
            if raw:
                try:
                    obj = json.loads(raw)
                    text = document_text(obj) if isinstance(obj, dict) else str(obj)
                except (json.JSONDecodeError, ValueError):
                    text = raw.strip()
            if text is None:
                contents = doc.contents()
                if contents is None:
                    raise ValueError(f"{self.path}: document {docid} has no stored text; rebuild the Lucene "
                                     f"index with --storeRaw")
                text = contents.strip()
            found[docid] = text
        return found
