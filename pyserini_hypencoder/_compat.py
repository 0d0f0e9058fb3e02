"""The few places where Pyserini 1.6 and 2.x (and transformers 4.57+ and 5.x) differ, and nowhere else.

Every other module takes Pyserini's names from here rather than from ``pyserini`` itself::

    from ._compat import QueryEncoder, DocumentEncoder, JsonlCollectionIterator   # pyserini.encode
    from ._compat import DenseSearchResult, PrfDenseSearchResult                  # pyserini.search.faiss
    from ._compat import LuceneSearcher, get_topics, load_topics_from_file        # pyserini.search(.lucene)

A name is imported on first use (PEP 562 ``__getattr__``): importing this module loads neither torch, nor
Pyserini, nor the JVM, and the start-up hook may load it by file path (standard library only at module level).
Before the first Pyserini import it checks the installed version (one line, :class:`PyseriniVersionError`) and
it turns the two known import-time failures into one line (:class:`PyseriniImportError`):

* Pyserini 2.4+ downloads its prebuilt-index tables from GitHub when ``pyserini.util`` is first imported (which
  ``pyserini.encode``, ``pyserini.search`` and ``pyserini.index`` all do): offline that is a ``URLError`` before
  anything runs.  Pyserini 2.0-2.3 have the tables built in.
* Pyserini 1.6 builds an ``openai.OpenAI`` client when ``pyserini.encode`` is imported, which openai 2.34+ refuses
  without an API key (the reason for ``openai<2.34`` on Python 3.11 in setup.cfg).

What differs between the lines, and is handled here:

=============================  ==============================  ======================================
                               Pyserini 1.6 (Python 3.11+)     Pyserini 2.x (Python 3.12+)
=============================  ==============================  ======================================
topics from a file             ``get_topics_with_reader``      2.0-2.3 the same; 2.4 renamed it
                               ``(reader_class, path)``        ``load_topics_from_file(path, reader_class)``
prebuilt-index tables          built in                        2.0-2.3 built in; 2.4 downloaded at import
JVM options                    ``pyserini/setup.py``           ``pyserini/_jvm.py`` (see ``_java``)
transformers                   4.57+ or 5.x                    2.0-2.2: 4.57+ or 5.x; 2.3+: 5.x
=============================  ==============================  ======================================

The encoder base classes, result dataclasses, ``JsonlCollectionIterator``, ``LuceneSearcher`` and
``get_topics`` are the same on both lines.  transformers 5 loads ``from_pretrained`` weights in the checkpoint's
dtype (``dtype="auto"``) where 4.x loads float32; :func:`hf_float32` asks for float32 on both.
"""
from __future__ import annotations

import os
import sys

SUPPORTED_PYSERINI = ">=1.6,<3"
_MIN, _MAX = (1, 6), (3,)          # [1.6, 3)
DOCS = "docs/compatibility.md"
NEWEST_OFFLINE_2X = "2.3.0"        # the newest Pyserini 2.x whose import needs no network

# name -> (module, attribute); all of them are the same on both lines except load_topics_from_file
_NAMES = {
    "QueryEncoder": ("pyserini.encode", "QueryEncoder"),
    "DocumentEncoder": ("pyserini.encode", "DocumentEncoder"),
    "JsonlCollectionIterator": ("pyserini.encode", "JsonlCollectionIterator"),
    "DenseSearchResult": ("pyserini.search.faiss", "DenseSearchResult"),
    "PrfDenseSearchResult": ("pyserini.search.faiss", "PrfDenseSearchResult"),
    "LuceneSearcher": ("pyserini.search.lucene", "LuceneSearcher"),
    "get_topics": ("pyserini.search", "get_topics"),
}
__all__ = sorted(_NAMES) + ["load_topics_from_file", "pyserini_version", "check_pyserini", "hf_float32",
                            "PyseriniVersionError", "PyseriniImportError"]


class PyseriniVersionError(ImportError):
    """Pyserini is missing or outside the supported range (one-line message)."""


class PyseriniImportError(ImportError):
    """Importing Pyserini failed for a known reason (one-line message naming the cause and the fix)."""


def _release(version: str) -> tuple:
    parts = []
    for piece in version.split("."):
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        parts.append(int(digits))
        if len(digits) != len(piece):   # "0rc1", "0+local": the release part ends here
            break
    return tuple(parts)


def pyserini_version() -> str | None:
    """The installed Pyserini's version (from its metadata: Pyserini is not imported), or None."""
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("pyserini")
    except PackageNotFoundError:
        return None


def pyserini_line(version: str | None = None) -> str | None:
    """``"1.6"`` or ``"2.x"`` for a supported version, else None."""
    release = _release(version or pyserini_version() or "")
    if not release or not (_MIN <= release < _MAX):
        return None
    return "2.x" if release >= (2,) else "1.6"


def check_pyserini(version: str | None = None) -> str:
    """The installed Pyserini's version; :class:`PyseriniVersionError` (one line) when missing or unsupported."""
    found = version or pyserini_version()
    py = "%d.%d" % sys.version_info[:2]
    fix = "pip install 'pyserini==1.6.0'" if sys.version_info < (3, 12) else "pip install 'pyserini>=2,<3'"
    if found is None:
        raise PyseriniVersionError(f"pyserini-hypencoder needs Pyserini {SUPPORTED_PYSERINI}, which is not installed "
                                   f"(Python {py}): {fix}")
    if pyserini_line(found) is None:
        raise PyseriniVersionError(f"pyserini-hypencoder needs Pyserini {SUPPORTED_PYSERINI}, found {found} "
                                   f"(Python {py}): {fix} (see {DOCS})")
    return found


def _is_table_download(exc: BaseException) -> bool:
    """True for the network error of Pyserini 2.4's prebuilt-index (or topics) table download."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError):   # URLError, HTTPError, TimeoutError, ConnectionError
            tb = exc.__traceback__
            while tb is not None:
                path = tb.tb_frame.f_code.co_filename.replace(os.sep, "/")
                if "/pyserini/" in path and path.endswith(("/prebuilt_index_info.py", "/search/_base.py")):
                    return True
                tb = tb.tb_next
        exc = exc.__cause__ or exc.__context__
    return False


def offline_message(exc: BaseException, version: str | None = None) -> str | None:
    """The one-line explanation for a failed Pyserini table download, or None if ``exc`` is something else."""
    if not _is_table_download(exc):
        return None
    found = version or pyserini_version() or "2.4+"
    detail = " ".join(str(exc).split())[:120] or type(exc).__name__
    return (f"pyserini-hypencoder: Pyserini {found} downloads its prebuilt-index tables from GitHub when it is "
            f"imported, and that failed ({detail}); offline, use Pyserini {NEWEST_OFFLINE_2X} (tables built in): "
            f"pip install 'pyserini=={NEWEST_OFFLINE_2X}' (see {DOCS})")


def _openai_message(exc: BaseException, version: str) -> str | None:
    if type(exc).__name__ != "OpenAIError" or pyserini_line(version) != "1.6":
        return None
    return (f"pyserini-hypencoder: Pyserini {version} builds an OpenAI client when pyserini.encode is imported, "
            f"which openai 2.34+ refuses without an API key: pip install 'openai<2.34' (see {DOCS})")


_checked_version = None


def _import(module: str):
    """Import a Pyserini module (the package's ``__init__`` has set up Java already), after the version check."""
    import importlib
    global _checked_version
    if _checked_version is None:
        _checked_version = check_pyserini()
    version = _checked_version
    try:
        return importlib.import_module(module)
    except Exception as exc:
        message = offline_message(exc, version) or _openai_message(exc, version)
        if message:
            raise PyseriniImportError(message) from exc
        raise


def __getattr__(name: str):
    if name in _NAMES:
        module, attribute = _NAMES[name]
        value = getattr(_import(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_topics_from_file(path: str, reader_class: str = "TsvString") -> dict:
    """Topics from a file with an Anserini topic reader (``TsvString``, ``TsvInt``, ``JsonString``, ...).

    Pyserini 2.4 renamed ``get_topics_with_reader(reader_class, path)`` to ``load_topics_from_file(path,
    reader_class)`` (arguments swapped); 1.6 and 2.0-2.3 have only the old one.
    """
    search = _import("pyserini.search")
    reader = reader_class if "." in reader_class else f"io.anserini.search.topicreader.{reader_class}TopicReader"
    if hasattr(search, "load_topics_from_file"):
        return search.load_topics_from_file(str(path), reader)
    return search.get_topics_with_reader(reader, str(path))


def hf_float32() -> dict:
    """``from_pretrained`` keyword arguments that load float32 weights on transformers 4.57+ and 5.x alike
    (5.x defaults to ``dtype="auto"``, the checkpoint's own dtype; 4.x to float32)."""
    import torch
    return {"dtype": torch.float32}
