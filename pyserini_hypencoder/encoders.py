"""Pyserini-style encoders: queries -> q-nets, documents -> vectors."""
from __future__ import annotations

import hashlib
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from ._compat import DocumentEncoder, QueryEncoder
from .formats.corpus import join_title
from .model import Hypencoder, QNetBatch, load_hypencoder
from .model.fingerprint import weights_fingerprint
from .model.tokenize import each_alone, tokenize

DEFAULT_QUERY_MAX_LENGTH = 64
DEFAULT_PASSAGE_MAX_LENGTH = 512


def model_fingerprint(model: Hypencoder) -> str:
    """A short sha256 over every weight of the model (query and passage sides)."""
    return weights_fingerprint(model)


def document_fingerprint(model: Hypencoder) -> str:
    """A short sha256 over what makes a document vector: the passage-side backbone's weights and the pooling.
    Models that differ only in the query side (the hyper head: a frozen-backbone training run) share it."""
    digest = hashlib.sha256(f"{weights_fingerprint(model.passage_encoder())}:{model.pooling}".encode())
    return digest.hexdigest()[:16]


class _HypencoderSide:
    """Shared set-up of both encoders: model, device, precision, max length."""

    def _setup(self, encoder, device: str, max_length: Optional[int], bf16: bool, num_attention_heads, default_len,
               settings_key: str):
        self.model = (encoder.to(device).eval() if isinstance(encoder, Hypencoder) else
                      load_hypencoder(encoder or "default", device=device, num_attention_heads=num_attention_heads))
        self.device = torch.device(device)
        self.bf16 = bool(bf16)
        self.max_length = int(max_length or self.model.settings.get(settings_key) or default_len)
        self.tokenizer = self.model.tokenizer
        if self.tokenizer is None:
            raise ValueError("the model has no tokenizer")

    @property
    def encoder_name(self) -> str:
        return str(self.model.settings.get("source", "default"))

    @property
    def fingerprint(self) -> str:
        return model_fingerprint(self.model)

    @property
    def document_fingerprint(self) -> str:
        return document_fingerprint(self.model)

    def _tokenize(self, texts: Sequence[str], max_length: Optional[int]):
        return tokenize(self.tokenizer, texts, int(max_length or self.max_length), self.device)


class HypencoderQueryEncoder(QueryEncoder, _HypencoderSide):
    """Encodes queries into q-nets.

    ``encoder_dir``: checkpoint directory, Hub id, ``"default"`` or a loaded :class:`Hypencoder`.
    ``encode(query)`` returns a :class:`QNetBatch` holding one q-net; ``encode_batch`` holds one per query.
    Each query is encoded on its own (no padding, no batch mates), so its q-net and every score it gives are the
    same whatever other queries share the call: a run does not depend on ``--batch-size``, nor a server's answer
    on other users' traffic.  Queries are encoded in fp32 (for one short query that is faster on a CPU than bf16
    autocast, which casts the weights again on every call); ``bf16`` makes the q-nets score in bf16.
    """

    def __init__(self, encoder_dir: Union[str, Hypencoder, None] = None, *, device: str = "cpu",
                 max_length: Optional[int] = None, bf16: bool = False, num_attention_heads: Optional[int] = None,
                 **kwargs):
        super().__init__(None)
        self._setup(encoder_dir, device, max_length, bf16 or kwargs.get("fp16", False), num_attention_heads,
                    DEFAULT_QUERY_MAX_LENGTH, "query_max_length")
        self.has_model = True

    @torch.no_grad()
    def encode_batch(self, queries: Sequence[str], max_length: Optional[int] = None, **kwargs) -> QNetBatch:
        queries = list(queries)
        if not queries:
            raise ValueError("no queries to encode")
        if any(not isinstance(q, str) or not q.strip() for q in queries):
            raise ValueError("empty query text")
        qnets = QNetBatch.concat([self.model.encode_queries(ids, mask) for ids, mask in
                                  each_alone(self.tokenizer, queries, max_length or self.max_length, self.device)])
        return qnets.to(compute_dtype=torch.bfloat16) if self.bf16 else qnets

    def encode(self, query: str, max_length: Optional[int] = None, **kwargs) -> QNetBatch:
        return self.encode_batch([query], max_length=max_length)


class HypencoderDocumentEncoder(DocumentEncoder, _HypencoderSide):
    """Encodes documents into (N, d) float32 vectors with the model's passage pooling."""

    def __init__(self, model_name: Union[str, Hypencoder, None] = None, tokenizer_name: Optional[str] = None,
                 device: str = "cpu", *, max_length: Optional[int] = None, bf16: bool = False,
                 num_attention_heads: Optional[int] = None, **kwargs):
        self._setup(model_name, device, max_length, bf16 or kwargs.get("fp16", False), num_attention_heads,
                    DEFAULT_PASSAGE_MAX_LENGTH, "passage_max_length")
        if tokenizer_name:
            from transformers import AutoTokenizer
            self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_name)

    @property
    def dimension(self) -> int:
        return self.model.hidden_size

    @torch.no_grad()
    def encode(self, texts: Sequence[str], titles: Optional[Sequence[str]] = None, max_length: Optional[int] = None,
               **kwargs) -> np.ndarray:
        texts = list(texts)
        if titles is not None:
            if len(titles) != len(texts):
                raise ValueError(f"{len(titles)} titles for {len(texts)} texts")
            texts = [join_title(t, x) for t, x in zip(titles, texts)]
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        texts = [t if t else " " for t in texts]  # an empty document still gets [CLS] [SEP]
        ids, mask = self._tokenize(texts, max_length)
        vectors = self.model.encode_passages(ids, mask, bf16=self.bf16)
        return vectors.float().cpu().numpy().astype(np.float32, copy=False)


class ChunkEncoder:
    """Encodes a list of texts as an index's vectors are made: tokenized once, sorted by token count (less
    padding), padded per batch, order restored."""

    def __init__(self, encoder: HypencoderDocumentEncoder, *, batch_size: int = 64):
        self.encoder = encoder
        self.model = encoder.model
        self.batch_size = int(batch_size)
        self.pad_id = int(encoder.tokenizer.pad_token_id or 0)

    def batches(self, texts: List[str]) -> List[Tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """(positions in ``texts``, input_ids, attention_mask) per batch, longest documents first."""
        texts = [t if t else " " for t in texts]  # an empty document still gets [CLS] [SEP]
        ids = self.encoder.tokenizer(texts, truncation=True, max_length=self.encoder.max_length, padding=False,
                                     return_attention_mask=False, return_token_type_ids=False)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        out = []
        for start in range(0, len(order), self.batch_size):
            positions = order[start:start + self.batch_size]
            input_ids = pad_sequence([torch.tensor(ids[p], dtype=torch.long) for p in positions], batch_first=True,
                                     padding_value=self.pad_id)
            mask = (torch.arange(input_ids.shape[1]) < torch.from_numpy(lengths[positions])[:, None]).long()
            out.append((positions, input_ids, mask))
        return out

    @torch.inference_mode()
    def encode_batches(self, batches, count: int, done: Optional[Callable[[int], object]] = None) -> np.ndarray:
        vectors = np.empty((count, self.encoder.dimension), dtype=np.float32)
        device = self.encoder.device
        for positions, input_ids, mask in batches:
            out = self.model.encode_passages(input_ids.to(device), mask.to(device), bf16=self.encoder.bf16)
            vectors[positions] = out.float().cpu().numpy()
            if done is not None:
                done(len(positions))
        return vectors

    def encode(self, texts: List[str], done: Optional[Callable[[int], object]] = None) -> np.ndarray:
        """(len(texts), d) float32 vectors, in the order of ``texts``; ``done(n)`` after each batch of n."""
        if not texts:
            return np.zeros((0, self.encoder.dimension), dtype=np.float32)
        return self.encode_batches(self.batches(list(texts)), len(texts), done)
