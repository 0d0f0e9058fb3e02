"""Hypencoder: a shared backbone, a hyper head for queries and pooled vectors for passages."""
from __future__ import annotations

import contextlib
from typing import Optional

import torch
import torch.nn as nn

from .hyperhead import HyperHead
from .qnet import QNetBatch, QNetSpec

POOLINGS = ("cls", "mean", "mean_normalized")


def pool(states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Passage vector from token states: the raw CLS state, a masked mean, or its unit-length version
    (``mean_normalized``, as sentence-transformers' Pooling + Normalize)."""
    if pooling == "mean_normalized":
        return torch.nn.functional.normalize(pool(states, attention_mask, "mean"), dim=-1)
    if pooling == "cls":
        return states[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(states.dtype)
        return (states * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")


def autocast(enabled: bool, device: torch.device):
    """bf16 autocast for the backbone and hyper head (layer norms and softmax stay fp32)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


class Hypencoder(nn.Module):
    """Backbone + hyper head.  Queries become q-nets; passages become vectors.

    ``backbone`` is a Hugging Face encoder (``BertModel`` for the published checkpoints);
    ``passage_backbone`` is the same object unless the model has separate encoders.
    """

    logit_scale = 1.0   # q-net scores enter the training loss unscaled

    def __init__(self, backbone: nn.Module, head: HyperHead, *, passage_backbone: Optional[nn.Module] = None,
                 pooling: str = "cls", tokenizer=None, settings: Optional[dict] = None):
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; expected one of {POOLINGS}")
        self.backbone = backbone
        self.head = head
        self._separate_passage_backbone = passage_backbone is not None and passage_backbone is not backbone
        if self._separate_passage_backbone:
            self.passage_backbone = passage_backbone
        self.pooling = pooling
        self.tokenizer = tokenizer
        # Free-form settings saved with the model: max lengths, backbone source, training notes.
        self.settings = dict(settings or {})

    # -- structure --------------------------------------------------------
    @property
    def spec(self) -> QNetSpec:
        return self.head.spec

    @property
    def hidden_size(self) -> int:
        return self.head.hidden_size

    @property
    def shared_encoder(self) -> bool:
        return not self._separate_passage_backbone

    def passage_encoder(self) -> nn.Module:
        return self.passage_backbone if self._separate_passage_backbone else self.backbone

    @property
    def device(self) -> torch.device:
        return next(self.head.parameters()).device

    # -- forward pieces -----------------------------------------------------
    def query_states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False) -> torch.Tensor:
        """Token states of the query side (B, n, h)."""
        with autocast(bf16, input_ids.device):
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def qnets_from_states(self, states: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                          detach: bool = True) -> QNetBatch:
        """Hyper head on (possibly cached) token states -> a batch of q-nets."""
        with autocast(bf16, states.device):
            weights, biases = self.head(states, attention_mask)
        return QNetBatch(weights, biases, self.spec, torch.bfloat16 if bf16 else torch.float32, detach=detach)

    def encode_queries(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                       detach: bool = True) -> QNetBatch:
        states = self.query_states(input_ids, attention_mask, bf16)
        return self.qnets_from_states(states, attention_mask, bf16, detach)

    def passage_side(self, vectors: torch.Tensor) -> torch.Tensor:
        """Document vectors as the q-nets score them: as they are (a bi-encoder may normalise them)."""
        return vectors

    def encode_passages(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, bf16: bool = False,
                        pooling: Optional[str] = None) -> torch.Tensor:
        """Passage vectors (N, h) in float32 (``pooling``: the model's unless given)."""
        with autocast(bf16, input_ids.device):
            states = self.passage_encoder()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return pool(states.float(), attention_mask, pooling or self.pooling)

    # -- persistence (see checkpoint.py) -------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str, **kwargs) -> "Hypencoder":
        """Load a checkpoint directory or Hub id in the published layout (see :func:`load_hypencoder`)."""
        from .checkpoint import load_hypencoder
        return load_hypencoder(name_or_path, **kwargs)

    def save_pretrained(self, out_dir: str, **kwargs) -> None:
        """Save in the published layout (see :func:`save_hypencoder`)."""
        from .checkpoint import save_hypencoder
        save_hypencoder(self, out_dir, **kwargs)

    @classmethod
    def from_backbone(cls, backbone_name_or_path: str, *, vector_dimensions=None, num_hidden_layers: int = 2,
                      activation: str = "relu", do_residual: bool = True, do_residual_on_last: bool = False,
                      layer_norm_before_residual: bool = True, do_layer_norm: bool = True, pooling: str = "cls",
                      seed: int = 1) -> "Hypencoder":
        """Build a new, untrained Hypencoder around a Hugging Face encoder (local dir, package or Hub id).

        ``vector_dimensions`` defaults to ``[h] * (num_hidden_layers + 1) + [1]``.
        """
        from .checkpoint import load_backbone
        backbone, tokenizer, source = load_backbone(backbone_name_or_path)
        hidden = backbone.config.hidden_size
        dims = list(vector_dimensions) if vector_dimensions else [hidden] * (num_hidden_layers + 1) + [1]
        spec = QNetSpec(tuple(dims), activation=activation, do_layer_norm=do_layer_norm, do_residual=do_residual,
                        do_residual_on_last=do_residual_on_last, layer_norm_before_residual=layer_norm_before_residual)
        head = HyperHead(hidden, spec)
        head.reset_parameters(torch.Generator().manual_seed(seed))
        return cls(backbone, head, pooling=pooling, tokenizer=tokenizer, settings={"backbone": source})
