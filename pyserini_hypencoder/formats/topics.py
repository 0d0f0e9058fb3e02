"""Topics: an ordered ``{qid: query text}`` from a local TSV or JSONL file or a Pyserini topic name, and the TSV
written back.

A local ``qid<TAB>query`` TSV (``.tsv``/``.txt``, optionally gzipped), a JSONL file (Pyserini's
``{"id", "title"}``, BEIR's ``{"_id", "text"}`` or ``{"qid", "query"}``), or a name Pyserini's ``get_topics`` knows.
"""
from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Dict, Mapping, Union

from .._fsutil import atomic_file
from .text import iter_jsonl, open_text, plain_suffix

logger = logging.getLogger(__name__)

TOPIC_SUFFIXES = (".tsv", ".txt", ".jsonl", ".json")
QUERY_ID_KEYS = ("id", "qid", "query_id", "_id")
QUERY_TEXT_KEYS = ("title", "query", "text", "contents")


def read_topics(topics: Union[str, os.PathLike]) -> Dict[str, str]:
    """Topics as an ordered ``{qid: query text}``: a local file (kept in file order) or a Pyserini topic name.

    Raises ``FileNotFoundError``/``ValueError`` with a one-line message on a missing, malformed or empty file,
    a duplicate query id, an empty query, or an unknown / unreachable topic name.
    """
    path = Path(topics)
    if path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"{path}: topics must be a file, not a directory")
        suffix = plain_suffix(path)
        if suffix in (".jsonl", ".json"):
            result = _read_jsonl_topics(path)
        elif suffix in (".tsv", ".txt"):
            result = _read_tsv_topics(path)
        else:
            raise ValueError(f"{path}: unknown topics format {suffix!r}; expected .tsv, .txt or .jsonl")
        if not result:
            raise ValueError(f"{path}: no topics in the file")
        return result
    text = str(topics)
    if os.sep in text or plain_suffix(path) in TOPIC_SUFFIXES:
        raise FileNotFoundError(f"{text}: topics file not found")
    return _pyserini_topics(text)


def _add_topic(result: Dict[str, str], qid, text, where: str) -> None:
    qid = str(qid).strip()
    if not qid:
        raise ValueError(f"{where}: empty query id")
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{where}: empty query text for query {qid}")
    if qid in result:
        raise ValueError(f"{where}: duplicate query id {qid}")
    result[qid] = text.strip()


HEADER_IDS = {"qid", "query_id", "query-id", "id", "_id", "topic"}
HEADER_TEXTS = {"query", "text", "title", "query_text", "question"}


def _read_tsv_topics(path: Path) -> Dict[str, str]:
    result: Dict[str, str] = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) < 2:
                raise ValueError(f"{path}:{n}: expected 'qid<TAB>query text', got {line[:60]!r}")
            if not result and parts[0].strip().lower() in HEADER_IDS and parts[1].strip().lower() in HEADER_TEXTS:
                logger.warning("%s:%d: skipping a header line %r (not a query)", path, n, line)
                continue
            _add_topic(result, parts[0], "\t".join(parts[1:]), f"{path}:{n}")
    return result


def _read_jsonl_topics(path: Path) -> Dict[str, str]:
    result: Dict[str, str] = {}
    for where, obj in iter_jsonl(path):
        qid = next((obj[k] for k in QUERY_ID_KEYS if k in obj), None)
        text = next((obj[k] for k in QUERY_TEXT_KEYS if k in obj), None)
        if qid is None:
            raise ValueError(f"{where}: no query id (one of {', '.join(QUERY_ID_KEYS)})")
        if text is None:
            raise ValueError(f"{where}: no query text (one of {', '.join(QUERY_TEXT_KEYS)})")
        _add_topic(result, qid, text, where)
    return result


@contextlib.contextmanager
def _quiet_java():
    """Silence fds 1 and 2 (the JVM logs and prints stack traces there) for the duration of the block."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:
        yield
        return
    with open(os.devnull, "w") as null:
        for fd in (1, 2):
            os.dup2(null.fileno(), fd)
        try:
            yield
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)


def _pyserini_topics(name: str) -> Dict[str, str]:
    import pyserini_hypencoder  # noqa: F401  (Java before Pyserini)
    from .._compat import get_topics

    try:
        with _quiet_java():
            raw = get_topics(name)
    except ValueError:
        raise ValueError(f"{name}: neither a topics file nor a Pyserini topic name") from None
    except Exception as exc:  # jnius.JavaException: Anserini downloads most topic sets on first use
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"{name}: cannot load Pyserini topics (offline? use a local TSV/JSONL file): "
                         f"{detail}") from None
    result: Dict[str, str] = {}
    for qid, topic in raw.items():
        text = topic.get("title") if isinstance(topic, Mapping) else topic
        _add_topic(result, qid, text, name)
    if not result:
        raise ValueError(f"{name}: the topic set is empty")
    return result


def write_topics(path, topics: Mapping[str, str]) -> None:
    """``qid<TAB>query`` lines (whitespace in a query collapsed to single spaces), written atomically."""
    with atomic_file(path) as f:
        f.writelines(f"{qid}\t{' '.join(text.split())}\n" for qid, text in topics.items())
