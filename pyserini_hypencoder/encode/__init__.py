"""Encoding corpora into index directories (``python -m pyserini_hypencoder.encode``); see docs/encoding.md.

Names are imported on first use, so the CLI answers ``--help`` and usage errors without starting torch."""
from .._lazy import lazy_exports

_EXPORTS = {"encode_corpus": "._encode", "encoding_meta": "._encode", "Shard": "._shard", "check_shard": "._shard"}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
