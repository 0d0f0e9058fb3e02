"""Run files in Pyserini's formats: first-stage runs read, TREC/MS MARCO runs written, and the run order.

Read: TREC 6 columns ``qid Q0 docid rank score tag``, MS MARCO ``qid docid rank`` (tab or space separated),
``qid docid score`` (a float third column) and 4 columns ``qid docid rank score`` or ``qid Q0 docid rank``.
Written: TREC lines with scores printed to 6 decimals (as Pyserini does), or MS MARCO ``qid<TAB>docid<TAB>rank``;
hits are ordered by printed score, then docid.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from .._fsutil import atomic_file
from .text import open_text

logger = logging.getLogger(__name__)

OUTPUT_FORMATS = ("trec", "msmarco")
SCORE_DECIMALS = 6   # TREC run scores are printed with this many decimals (as Pyserini does)

Hits = Sequence[Tuple[str, float]]


@dataclass(frozen=True)
class RunEntry:
    """One line of a first-stage run."""

    docid: str
    rank: int
    score: float


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
    comments = 0
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                comments += bool(parts)
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
    if comments:
        logger.warning("%s: skipped %d comment line(s) starting with '#'", path, comments)
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
