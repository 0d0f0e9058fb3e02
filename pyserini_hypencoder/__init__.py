"""pyserini-hypencoder: Hypencoder retrieval (hypernetwork q-nets) for Pyserini.

Importing the package first makes Pyserini's JVM start on Java 21+ (see ``_java``).  The public
API is re-exported here and imported on first use, so ``import pyserini_hypencoder`` stays cheap.
"""

from ._java import configure_java
from ._lazy import lazy_exports

configure_java()

__version__ = "0.1.0"

_EXPORTS = {
    # model
    "Hypencoder": ".model", "QNetBatch": ".model", "QNetSpec": ".model", "HyperHead": ".model",
    "ScoringConfig": ".model", "load_hypencoder": ".model", "save_hypencoder": ".model", "CheckpointError": ".model",
    # Pyserini-style encoders
    "HypencoderQueryEncoder": ".encoders", "HypencoderDocumentEncoder": ".encoders", "ChunkEncoder": ".encoders",
    "model_fingerprint": ".encoders",
    # corpora, topics, runs, qrels
    "JsonlCorpus": ".formats", "join_title": ".formats", "read_topics": ".formats", "read_run": ".formats",
    "write_run": ".formats", "read_qrels": ".formats",
    # index directory and its vectors
    "DenseIndex": ".index", "Vectors": ".index", "IndexWriter": ".index", "write_index": ".index",
    "IndexFormatError": ".index", "IndexMismatchError": ".index",
    # search strategies, search and rerank
    "STRATEGIES": ".strategies", "TopK": ".topk",
    "HypencoderSearcher": ".search", "HypencoderReranker": ".search", "exact_search": ".search",
    "graph_search": ".ann", "ivf_search": ".ann", "surrogate_search": ".ann",
    # hybrid search (BM25 + Hypencoder)
    "HypencoderHybridSearcher": ".search.hybrid", "fuse": ".search.hybrid",
}
__all__ = sorted(_EXPORTS) + ["configure_java"]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
