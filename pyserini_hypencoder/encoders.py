"""Pyserini-style encoders: queries -> q-nets, documents -> vectors."""
from __future__ import annotations

import hashlib

from typing import Optional, Sequence, Union

import numpy as np
import torch
from ._compat import DocumentEncoder, QueryEncoder

from .model import Hypencoder, QNetBatch, load_hypencoder
from .model.fingerprint import weights_fingerprint

DEFAULT_QUERY_MAX_LENGTH = 64
DEFAULT_PASSAGE_MAX_LENGTH = 512


def join_title(title: Optional[str], text: str) -> str:
    """Title and body joined as in training: ``"title text"``, stripped (no title: the text alone)."""
    return f"{title} {text}".strip() if title else (text or "").strip()


def document_text(obj: dict) -> str:
    """Text to encode for a corpus record: BEIR ``title`` + ``text`` (joined as in training) or Pyserini
    ``contents`` (after the ``title`` when there is one)."""
    title = str(obj.get("title") or "")
    if "text" in obj:
        return join_title(title, str(obj["text"] or ""))
    if "contents" in obj:
        return join_title(title, str(obj["contents"] or ""))
    if title:
        return title.strip()
    raise ValueError("record has neither text nor contents")


def model_fingerprint(model: Hypencoder) -> str:
    """A short sha256 over every weight of the model (query and passage sides)."""
    return weights_fingerprint(model)


def document_fingerprint(model: Hypencoder) -> str:
    """A short sha256 over what makes a document vector: the passage-side backbone's weights and the pooling.
    Models that differ only in the query side (the hyper head: a frozen-backbone training run) share it."""
    digest = hashlib.sha256(f"{weights_fingerprint(model.passage_encoder())}:{model.pooling}".encode())
    return digest.hexdigest()[:16]


def _load(encoder: Union[str, Hypencoder, None], device: str, num_attention_heads: Optional[int]) -> Hypencoder:
    if isinstance(encoder, Hypencoder):
        return encoder.to(device).eval()
    return load_hypencoder(encoder or "default", device=device, num_attention_heads=num_attention_heads)


class _HypencoderSide:
    """Shared set-up of both encoders: model, device, precision, max length."""

    def _setup(self, encoder, device: str, max_length: Optional[int], bf16: bool, num_attention_heads, default_len,
               settings_key: str):
        self.model = _load(encoder, device, num_attention_heads)
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
        batch = self.tokenizer(list(texts), padding="longest", truncation=True,
                               max_length=int(max_length or self.max_length), return_tensors="pt")
        return batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)


class HypencoderQueryEncoder(QueryEncoder, _HypencoderSide):
    """Encodes queries into q-nets.

    ``encoder_dir``: checkpoint directory, Hub id, ``"default"`` or a loaded :class:`Hypencoder`.
    ``encode(query)`` returns a :class:`QNetBatch` holding one q-net; ``encode_batch`` holds one per query.
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
        for q in queries:
            if not isinstance(q, str) or not q.strip():
                raise ValueError("empty query text")
        ids, mask = self._tokenize(queries, max_length)
        return self.model.encode_queries(ids, mask, bf16=self.bf16)

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
