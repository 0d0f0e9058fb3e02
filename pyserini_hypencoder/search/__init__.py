"""Search an index with q-nets (exact or approximate) and rerank first-stage runs; ``python -m`` is the CLI.

Names are imported on first use, so the CLI answers ``--help`` and usage errors without starting torch or the JVM.
"""
from importlib import import_module

_EXPORTS = {"HypencoderSearcher": "._searcher", "HypencoderReranker": ".rerank", "exact_search": ".exact"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
