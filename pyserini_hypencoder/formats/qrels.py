"""Relevance judgments: BEIR's ``qrels/<split>.tsv`` (header ``query-id corpus-id score``) or TREC qrels
(``qid 0 docid rel``) read, and TREC qrels written (what trec_eval reads)."""
from __future__ import annotations

from typing import Dict, Mapping

from .._fsutil import atomic_file
from .text import open_text

Qrels = Dict[str, Dict[str, int]]


def read_qrels(path) -> Qrels:
    """``{qid: {docid: relevance}}`` in file order; a one-line ValueError naming the line on a malformed one."""
    qrels: Qrels = {}
    with open_text(path) as f:
        for n, line in enumerate(f, 1):
            parts = line.split()
            if not parts or (n == 1 and parts[0] == "query-id"):
                continue
            if len(parts) == 3:
                qid, docid, rel = parts
            elif len(parts) == 4:
                qid, _, docid, rel = parts
            else:
                raise ValueError(f"{path}:{n}: expected 3 (BEIR) or 4 (TREC) columns, got {len(parts)}")
            try:
                qrels.setdefault(qid, {})[docid] = int(rel)
            except ValueError:
                raise ValueError(f"{path}:{n}: relevance {rel!r} is not an integer") from None
    return qrels


def write_qrels(path, qrels: Mapping[str, Mapping[str, int]]) -> None:
    """TREC qrels ``qid 0 docid rel``, written atomically."""
    with atomic_file(path) as f:
        f.writelines(f"{qid} 0 {docid} {rel}\n" for qid, docs in qrels.items() for docid, rel in docs.items())
