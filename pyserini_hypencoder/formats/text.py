"""Reading text files the way every reader here does: UTF-8 (a byte-order mark dropped), gunzipped when the content
is gzip whatever the name says, damage reported as one line naming the file."""
from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Iterator, TextIO, Tuple


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


def is_gzip(path) -> bool:
    """Whether the file's content is gzip (whatever its name says)."""
    with open(path, "rb") as probe:
        return probe.read(2) == b"\x1f\x8b"


def open_text(path) -> TextIO:
    """A UTF-8 text file (a leading byte-order mark dropped), gunzipped when its content is gzip."""
    return _GzipText(path) if is_gzip(path) else open(path, encoding="utf-8-sig")


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
                message = exc.msg[:-3] if exc.msg.endswith(" at") else exc.msg   # "Invalid control character at"
                raise ValueError(f"{where}: malformed JSON ({message} at column {exc.colno})") from None
            if not isinstance(obj, dict):
                raise ValueError(f"{where}: expected a JSON object per line")
            yield where, obj


def plain_suffix(path: Path) -> str:
    """The suffix under a ``.gz``: ``topics.tsv.gz`` -> ``.tsv``."""
    path = Path(path)
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix
