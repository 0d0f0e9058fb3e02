"""Encoding corpora into index directories (``python -m pyserini_hypencoder.encode``); see docs/encoding.md."""
from ._corpus import JsonlCorpus, Shard, check_shard
from ._encode import ChunkEncoder, encode_corpus, encoding_meta

__all__ = ["JsonlCorpus", "Shard", "check_shard", "ChunkEncoder", "encode_corpus", "encoding_meta"]
