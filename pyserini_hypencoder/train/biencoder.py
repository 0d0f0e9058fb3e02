"""The bi-encoder control: the same backbone, pooled query and passage vectors, dot/cosine scoring.

With a frozen backbone the trainable part is a linear query projection (h x h, identity at the start: the
zero-shot backbone).  It has :class:`Hypencoder`'s methods (its query side a linear q-net), so the trainer, the
feature cache and exact search treat both alike.  Saved as ``config.json`` + ``biencoder.safetensors``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .._fsutil import atomic_directory
from ..model.checkpoint import load_backbone
from ..model.hypencoder import autocast, pool
from ..model.qnet import QNetBatch, QNetSpec

KIND = "pyserini-hypencoder-biencoder"


class BiEncoder(nn.Module):
    head = None   # no hyper head: the query side is a (trainable) linear projection of the pooled query

    def __init__(self, backbone: nn.Module, tokenizer, *, pooling: str = "mean", normalize: bool = True,
                 scale: float = 20.0, settings: Optional[dict] = None):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.normalize = normalize
        self.scale = self.logit_scale = float(scale)   # the factor on similarities in the training loss
        h = backbone.config.hidden_size
        self.query_projection = nn.Linear(h, h)
        with torch.no_grad():
            self.query_projection.weight.copy_(torch.eye(h))
            self.query_projection.bias.zero_()
        self.settings = dict(settings or {})

    @property
    def hidden_size(self) -> int:
        return self.backbone.config.hidden_size

    @property
    def device(self) -> torch.device:
        return self.query_projection.weight.device

    def passage_encoder(self) -> nn.Module:
        return self.backbone

    def query_states(self, input_ids, attention_mask, bf16: bool = False):
        with autocast(bf16, input_ids.device):
            return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def encode_passages(self, input_ids, attention_mask, bf16: bool = False, pooling: Optional[str] = None):
        return pool(self.query_states(input_ids, attention_mask, bf16).float(), attention_mask,
                    pooling or self.pooling)

    # -- scoring ------------------------------------------------------------
    def query_vectors(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        q = self.query_projection(pool(states.float(), mask, self.pooling))
        return F.normalize(q, dim=-1) if self.normalize else q

    def passage_side(self, vectors: torch.Tensor) -> torch.Tensor:
        """Document vectors as the query vectors score them (unit length when ``normalize``)."""
        return F.normalize(vectors.float(), dim=-1) if self.normalize else vectors.float()

    def qnets_from_states(self, states: torch.Tensor, mask: torch.Tensor, bf16: bool = False,
                          detach: bool = True) -> QNetBatch:
        """Each query vector as a linear q-net (score = q . d), scored in fp32."""
        q = self.query_vectors(states, mask)
        return QNetBatch([q.unsqueeze(-1)], [], QNetSpec((q.shape[1], 1)), detach=detach)

    # -- persistence ---------------------------------------------------------
    def save(self, out_dir, *, include_backbone: bool = False) -> Path:
        from safetensors.torch import save_file
        out = Path(out_dir)
        with atomic_directory(out) as tmp:
            state = {f"query_projection.{k}": v.detach().cpu().contiguous()
                     for k, v in self.query_projection.state_dict().items()}
            save_file(state, str(tmp / "biencoder.safetensors"))
            if include_backbone:
                self.backbone.save_pretrained(str(tmp / "backbone"))
                self.tokenizer.save_pretrained(str(tmp / "backbone"))
            config = {"kind": KIND, "pooling": self.pooling, "normalize": self.normalize, "scale": self.scale,
                      "backbone": "backbone" if include_backbone else self.settings.get("backbone"),
                      "settings": self.settings}
            (tmp / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
        return out

    @classmethod
    def load(cls, path) -> "BiEncoder":
        from safetensors.torch import load_file
        path = Path(path)
        config = json.loads((path / "config.json").read_text())
        if config.get("kind") != KIND:
            raise ValueError(f"{path}: not a bi-encoder directory")
        source = config["backbone"]
        backbone, tokenizer, _ = load_backbone(str(path / source) if source == "backbone" else source)
        model = cls(backbone, tokenizer, pooling=config["pooling"], normalize=config["normalize"],
                    scale=config["scale"], settings=config.get("settings"))
        state = load_file(str(path / "biencoder.safetensors"))
        model.query_projection.load_state_dict({k.split(".", 1)[1]: v for k, v in state.items()})
        return model.eval()


def is_biencoder_dir(path) -> bool:
    p = Path(str(path)) / "config.json"
    try:
        return p.is_file() and json.loads(p.read_text()).get("kind") == KIND
    except (OSError, json.JSONDecodeError):
        return False
