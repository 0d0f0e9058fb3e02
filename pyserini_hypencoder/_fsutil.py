"""Files the plugin writes: atomic files and directories (complete under their final name, or absent), JSON, and
where downloads and caches live."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator

CACHE_ENV = "PYSERINI_HYPENCODER_CACHE"


def cache_path(*parts: str) -> Path:
    """``$PYSERINI_HYPENCODER_CACHE/parts`` (default root ``~/.cache/pyserini_hypencoder``): downloaded data
    sets and feature caches live under this one root."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "pyserini_hypencoder")
    return root.joinpath(*parts)


def _normal_mode(path, mode: int) -> None:
    """``mkstemp``/``mkdtemp`` create private entries; give the result the permissions of any new one."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, mode & ~umask)


@contextlib.contextmanager
def atomic_file(path, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; it becomes ``path`` only when the block succeeds."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: output is a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
        _normal_mode(tmp, 0o666)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A fresh name beside ``path`` for a file or directory that something else writes (a child process, a
    library that takes a path); on success it is renamed to ``path``, on failure removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent)) / path.name
    try:
        yield tmp
        if tmp.is_dir():
            replace_directory(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json(path, data) -> None:
    """``data`` as indented JSON (keys sorted), written atomically."""
    with atomic_file(path) as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")


def replace_directory(new: Path, out: Path) -> None:
    """Rename the complete directory ``new`` to ``out``; an existing ``out`` is set aside until ``new`` is in place,
    then removed."""
    old = None
    if out.exists() or out.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(out_dir) -> Iterator[Path]:
    """Yield a temporary directory beside ``out_dir``; on success it replaces ``out_dir``, on error it is removed."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        yield tmp
