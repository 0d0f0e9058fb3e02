"""Which parameters train, and at what learning rate: frozen backbones, a cosine start's fixed tensors, and the
optimizer groups of the hyper head's hidden-layer generators."""
from __future__ import annotations

from typing import List

from .config import TrainConfig
from .head_init import fixed_parameter_names, last_generator_names


def is_frozen_backbone(name: str, cfg: TrainConfig) -> bool:
    """Whether parameter ``name`` belongs to a backbone that ``freeze_backbone`` keeps fixed."""
    return cfg.freeze_backbone and name.startswith(("backbone.", "passage_backbone."))


def trainable_parameters(model, cfg: TrainConfig):
    fixed = fixed_parameter_names(model, cfg)
    for name, p in model.named_parameters():
        p.requires_grad_(not is_frozen_backbone(name, cfg) and name not in fixed)
    return [p for p in model.parameters() if p.requires_grad]


def parameter_groups(model, cfg: TrainConfig) -> List[dict]:
    """Optimizer groups: the hyper-head parts that generate the q-net's hidden layers get
    ``lr * hidden_lr_scale``; the last layer's generator, the backbone and the bi-encoder get ``lr``."""
    params = trainable_parameters(model, cfg)
    if model.head is None or (cfg.hidden_lr_scale == 1.0 and cfg.hidden_parts == "all"):   # bi-encoder: one group
        return [{"params": params, "lr": cfg.lr}]
    last = last_generator_names(model.spec.num_layers - 1)
    main, hidden = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if not name.startswith("head.") or name in last:
            main.append(p)
        elif cfg.hidden_parts == "all" or name.startswith(("head.hyper_base_matrices.", "head.hyper_base_vectors.")):
            hidden.append(p)
        else:   # hidden_parts "base": the query-dependent generators stay at their initial values
            p.requires_grad_(False)
    if cfg.hidden_lr_scale == 0:   # frozen at their initial values: no gradients needed
        for p in hidden:
            p.requires_grad_(False)
        return [{"params": main, "lr": cfg.lr}]
    return [{"params": main, "lr": cfg.lr}, {"params": hidden, "lr": cfg.lr * cfg.hidden_lr_scale}]
