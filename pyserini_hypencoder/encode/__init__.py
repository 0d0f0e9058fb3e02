"""Encoding corpora into index directories (``python -m pyserini_hypencoder.encode``); see docs/encoding.md."""
from ._encode import encode_corpus, encoding_meta
from ._shard import Shard, check_shard
