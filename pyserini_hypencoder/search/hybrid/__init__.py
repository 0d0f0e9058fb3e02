"""Hybrid search: a Hypencoder's hits fused with BM25's (or a first-stage run's), as Pyserini's ``HybridSearcher``
fuses a dense and a sparse searcher; ``python -m pyserini_hypencoder.search.hybrid`` is the CLI."""
from ..._lazy import lazy_exports

_EXPORTS = {"HypencoderHybridSearcher": "._fusion", "fuse": "._fusion"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
