"""Disk cache of frozen-backbone features: passage vectors and query token states.

With a frozen backbone, running it is the expensive part of training; its outputs are computed once and
stored under ``cache_dir/<key>.pt``, the key hashing the backbone fingerprint, the kind of feature, the max
length, the pooling and every text in order.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Optional, Sequence

import torch
from tqdm.auto import tqdm

from .._fsutil import atomic_file, cache_path
from ..model.fingerprint import weights_fingerprint
from ..model.hypencoder import Hypencoder
from ..model.tokenize import each_alone, tokenize

logger = logging.getLogger(__name__)

DEFAULT_CACHE_DIR = cache_path("features")


def feature_key(fingerprint: str, kind: str, max_length: int, texts: Sequence[str], extra: str = "") -> str:
    digest = hashlib.sha256(f"{fingerprint}|{kind}|{max_length}|{extra}|{len(texts)}".encode())
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return f"{kind}-{digest.hexdigest()[:24]}"


def _load(path: Path):
    if path.exists():
        try:
            return torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:  # a broken cache file is recomputed, not fatal
            logger.warning("ignoring unreadable cache file %s (%s)", path, exc)
    return None


def _save(obj, path: Path) -> None:
    with atomic_file(path, "wb") as f:
        torch.save(obj, f)


def _batches(texts: Sequence[str], batch_size: int):
    """Indices in length order (less padding), cut into batches."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


@torch.no_grad()
def passage_vectors(model: Hypencoder, texts: Sequence[str], *, max_length: int, batch_size: int = 32,
                    cache_dir: Optional[Path] = DEFAULT_CACHE_DIR, bf16: bool = False, desc: str = "passages",
                    pooling: Optional[str] = None) -> torch.Tensor:
    """Pooled passage vectors (N, h) float32 of the model's passage encoder (``pooling``: the model's unless
    given), cached on disk."""
    texts = [t if t else " " for t in texts]
    pooling = pooling or model.pooling
    if pooling == "mean_normalized":   # derived from the cached mean vectors
        base = passage_vectors(model, texts, max_length=max_length, batch_size=batch_size, cache_dir=cache_dir,
                               bf16=bf16, desc=desc, pooling="mean")
        return torch.nn.functional.normalize(base, dim=-1)
    key = feature_key(weights_fingerprint(model.passage_encoder()), "passages", max_length, texts,
                      f"{pooling}|bf16={bf16}")
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if path is not None and (hit := _load(path)) is not None:
        logger.info("passage vectors from cache %s", path)
        return hit
    out = torch.zeros(len(texts), model.hidden_size)
    device = model.device
    with tqdm(total=len(texts), desc=desc, unit="doc") as bar:
        for idx in _batches(texts, batch_size):
            ids, mask = tokenize(model.tokenizer, [texts[i] for i in idx], max_length, device)
            vec = model.encode_passages(ids, mask, bf16=bf16, pooling=pooling)
            out[idx] = vec.float().cpu()
            bar.update(len(idx))
    if path is not None:
        _save(out, path)
    return out


@torch.no_grad()
def query_states(model: Hypencoder, texts: Sequence[str], *, max_length: int,
                 cache_dir: Optional[Path] = DEFAULT_CACHE_DIR, bf16: bool = False, desc: str = "queries") -> dict:
    """Query token states ``{"states": (Q, n, h) float32, "mask": (Q, n) long}`` padded to the longest, cached.
    Each query runs through the backbone on its own, as the query encoder runs it (no batch mates)."""
    key = feature_key(weights_fingerprint(model.backbone), "qstates", max_length, texts, f"bf16={bf16}|alone")
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if path is not None and (hit := _load(path)) is not None:
        logger.info("query states from cache %s", path)
        return hit
    alone = [(ids, model.query_states(ids, mask, bf16).float().cpu()) for ids, mask in
             tqdm(each_alone(model.tokenizer, texts, max_length, model.device), total=len(texts), desc=desc,
                  unit="query")]
    width = max(ids.shape[1] for ids, _ in alone)
    states, mask = torch.zeros(len(texts), width, model.hidden_size), torch.zeros(len(texts), width, dtype=torch.long)
    for i, (ids, s) in enumerate(alone):
        states[i, :ids.shape[1]], mask[i, :ids.shape[1]] = s[0], 1
    result = {"states": states, "mask": mask}
    if path is not None:
        _save(result, path)
    return result
