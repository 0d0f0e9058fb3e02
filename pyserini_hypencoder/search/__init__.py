"""Search an index with q-nets (exact or approximate) and rerank first-stage runs; ``python -m`` is the CLI.

Names are imported on first use, so the CLI answers ``--help`` and usage errors without starting torch or the JVM.
"""
from .._lazy import lazy_exports

_EXPORTS = {"HypencoderSearcher": "._searcher", "HypencoderReranker": ".rerank", "exact_search": ".exact"}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
