"""Topics and run files in Pyserini's formats: read topics, read first-stage runs, write TREC/MS MARCO runs.

Topics: a local ``qid<TAB>query`` TSV (``.tsv``/``.txt``, optionally gzipped), a JSONL file (Pyserini's
``{"id", "title"}``, BEIR's ``{"_id", "text"}`` or ``{"qid", "query"}``), or a Pyserini topic name.
Runs: TREC 6 columns ``qid Q0 docid rank score tag``, MS MARCO ``qid docid rank`` (tab or space separated),
``qid docid score`` (a float third column) and 4 columns ``qid docid rank score`` or ``qid Q0 docid rank``.
"""
from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, TextIO, Tuple, Union

import numpy as np

from ._fsutil import atomic_file

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("trec", "msmarco")
SCORE_DECIMALS = 6   # TREC run scores are printed with this many decimals (as Pyserini does)
TOPIC_SUFFIXES = (".tsv", ".txt", ".jsonl", ".json")
QUERY_ID_KEYS = ("id", "qid", "query_id", "_id")
QUERY_TEXT_KEYS = ("title", "query", "text", "contents")

Hits = Sequence[Tuple[str, float]]


@dataclass(frozen=True)
class RunEntry:
    """One line of a first-stage run."""

    docid: str
    rank: int
    score: float


class _GzipText(io.TextIOWrapper):
    """Gunzipped UTF-8 text whose damage (a truncated or corrupt stream) is a one-line ValueError naming the file."""

    def __init__(self, path):
        super().__init__(gzip.open(path, "rb"), encoding="utf-8-sig")
        self._path = path

    def _checked(self, read, *args):
        try:
            return read(*args)
        except (EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{self._path}: damaged gzip file ({exc})") from None

    def __next__(self):
        return self._checked(super().__next__)

    def readline(self, *args):
        return self._checked(super().readline, *args)

    def read(self, *args):
        return self._checked(super().read, *args)


def open_text(path) -> TextIO:
    """A UTF-8 text file (a leading byte-order mark dropped), gunzipped when its content is gzip (whatever its
    name says)."""
    with open(path, "rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return _GzipText(path)
    return open(path, encoding="utf-8-sig")


def iter_jsonl(path) -> Iterator[Tuple[str, dict]]:
    """``("path:line", object)`` for every non-blank line of a JSONL file (gzip too); a clear ValueError on a
    malformed line or a line that is not a JSON object."""
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{where}: malformed JSON ({exc.msg} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object per line")
            yield where, obj


def _plain_suffix(path: Path) -> str:
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


# -- topics ---------------------------------------------------------------------------------------------------------
def read_topics(topics: Union[str, os.PathLike]) -> Dict[str, str]:
    """Topics as an ordered ``{qid: query text}``: a local file (kept in file order) or a Pyserini topic name.

    Raises ``FileNotFoundError``/``ValueError`` with a one-line message on a missing, malformed or empty file,
    a duplicate query id, an empty query, or an unknown / unreachable topic name.
    """
    path = Path(topics)
    if path.exists():
        if path.is_dir():
            raise IsADirectoryError(f"{path}: topics must be a file, not a directory")
        suffix = _plain_suffix(path)
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
    if os.sep in text or _plain_suffix(path) in TOPIC_SUFFIXES:
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
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _pyserini_topics(name: str) -> Dict[str, str]:
    import pyserini_hypencoder  # noqa: F401  (Java before Pyserini)
    from ._compat import get_topics

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


# -- runs -----------------------------------------------------------------------------------------------------------
def read_run(path: Union[str, os.PathLike]) -> Dict[str, List[RunEntry]]:
    """A first-stage run as ``{qid: [RunEntry, ...]}`` in rank order (rank ascending, then score descending).

    Accepts TREC 6-column and MS MARCO 3/4-column lines, one format per file; a wrong or changing column count
    or a non-numeric rank/score raises ``ValueError`` naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: run file not found")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: run must be a file, not a directory")
    run: Dict[str, List[RunEntry]] = {}
    seen: Dict[str, set] = {}
    columns = None   # one format per file: every line has the first line's column count
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if columns is None:
                columns = len(parts)
            elif len(parts) != columns:
                raise ValueError(f"{path}:{n}: {len(parts)} columns, but the run's first line has {columns}")
            qid, entry = _parse_run_line(parts, f"{path}:{n}")
            if entry.docid in seen.setdefault(qid, set()):
                raise ValueError(f"{path}:{n}: document {entry.docid} appears twice for query {qid}")
            seen[qid].add(entry.docid)
            run.setdefault(qid, []).append(entry)
    if not run:
        raise ValueError(f"{path}: the run file is empty")
    for qid, entries in run.items():
        entries.sort(key=lambda e: (e.rank, -e.score))
    return run


def _number(text: str, kind, what: str, where: str):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{where}: {what} {text!r} is not a number") from None


def _parse_run_line(parts: List[str], where: str) -> Tuple[str, RunEntry]:
    count = len(parts)
    if count == 6:  # qid Q0 docid rank score tag
        rank = _number(parts[3], int, "rank", where)
        return parts[0], RunEntry(parts[2], rank, _number(parts[4], float, "score", where))
    if count == 4:
        if parts[1] == "Q0":  # qid Q0 docid rank
            rank = _number(parts[3], int, "rank", where)
            return parts[0], RunEntry(parts[2], rank, -float(rank))
        rank = _number(parts[2], int, "rank", where)  # qid docid rank score
        return parts[0], RunEntry(parts[1], rank, _number(parts[3], float, "score", where))
    if count == 3:
        if parts[1] == "Q0":
            raise ValueError(f"{where}: a TREC line needs 6 columns (qid Q0 docid rank score tag), got 3")
        try:  # MS MARCO: qid docid rank
            rank = int(parts[2])
            return parts[0], RunEntry(parts[1], rank, -float(rank))
        except ValueError:  # Tevatron: qid docid score (order by score)
            score = _number(parts[2], float, "rank/score", where)
            return parts[0], RunEntry(parts[1], 0, score)
    raise ValueError(f"{where}: expected 6 columns (TREC) or 3/4 columns (MS MARCO), got {count}")


# -- writing --------------------------------------------------------------------------------------------------------
def format_run_lines(qid: str, hits: Hits, *, output_format: str = "trec", tag: str = "Hypencoder",
                     max_hits: Optional[int] = None) -> Iterator[str]:
    """Lines for one query's hits, in the given order: ``qid Q0 docid rank score tag`` or ``qid\\tdocid\\trank``."""
    if output_format not in OUTPUT_FORMATS:
        raise ValueError(f"unknown output format {output_format!r}; expected one of {', '.join(OUTPUT_FORMATS)}")
    if any(c.isspace() for c in tag) or not tag:
        raise ValueError(f"run tag must be one non-empty word, got {tag!r}")
    for rank, (docid, score) in enumerate(hits[:max_hits] if max_hits else hits, 1):
        docid = str(docid).strip()
        if output_format == "trec":
            yield f"{qid} Q0 {docid} {rank} {float(score):.{SCORE_DECIMALS}f} {tag}\n"
        else:
            yield f"{qid}\t{docid}\t{rank}\n"


def printed_score(score):
    """A score (or array of scores) as the run file shows it: ties and order are decided on this value, so that
    documents whose scores differ only by floating-point noise (duplicates in different blocks) tie."""
    return np.round(score, SCORE_DECIMALS) if isinstance(score, np.ndarray) else round(float(score), SCORE_DECIMALS)


def rank_hits(hits: Iterable[Tuple[str, float]]) -> List[Tuple[str, float]]:
    """``(docid, score)`` pairs in run order: printed score descending, then docid (Pyserini's ``tie_breaker``)."""
    return sorted(hits, key=lambda h: (-printed_score(h[1]), h[0]))


def write_run(path: Union[str, os.PathLike], results: Mapping[str, Hits], *, output_format: str = "trec",
              tag: str = "Hypencoder", max_hits: Optional[int] = None) -> int:
    """Write ``{qid: hits}`` (hits already ordered best first) atomically; returns the number of lines."""
    lines = 0
    with atomic_file(path) as f:
        for qid, hits in results.items():
            for line in format_run_lines(qid, hits, output_format=output_format, tag=tag, max_hits=max_hits):
                f.write(line)
                lines += 1
    return lines
