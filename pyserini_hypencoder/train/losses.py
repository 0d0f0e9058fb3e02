"""Training losses of the Hypencoder paper (§3.2 of the spec), correct for any batch size >= 1.

Scores are ``scores[q, k]`` of query q on its own item k (k = 0 is the positive).  The total loss
is ``sum_i weight_i * loss_i``.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F


def margin_mse(own_scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Margin-MSE: mean over queries and negatives of ((s0 - sk) - (t0 - tk))^2 (identity normalisation)."""
    if own_scores.shape != labels.shape or own_scores.shape[1] < 2:
        raise ValueError(f"margin-MSE needs (B, 1+K>=2) scores and labels, got {tuple(own_scores.shape)} and "
                         f"{tuple(labels.shape)}")
    student = own_scores[:, :1] - own_scores[:, 1:]
    teacher = labels[:, :1] - labels[:, 1:]
    return F.mse_loss(student.float(), teacher.float().to(student.device))


def cross_entropy(matrix: torch.Tensor, targets: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
    """Softmax cross-entropy of (B, C) score rows against target columns; works for B = 1 (no squeeze)."""
    return F.cross_entropy(matrix.float() * scale, targets.to(matrix.device))


def in_batch_targets(batch_size: int, items_per_query: int, only_use_first_item: bool, device=None) -> torch.Tensor:
    """Target column of each query: its positive among the in-batch columns."""
    step = 1 if only_use_first_item else items_per_query
    return torch.arange(batch_size, device=device) * step


def batch_losses(model, states: torch.Tensor, mask: torch.Tensor, items: torch.Tensor,
                 labels: Optional[torch.Tensor], extra: Optional[torch.Tensor], *, margin_mse_weight: float = 0.0,
                 cross_entropy_weight: float = 1.0, use_in_batch_negatives: bool = True,
                 only_use_first_item: bool = True, ce_scale: float = 1.0, bf16: bool = False) -> Dict[str, torch.Tensor]:
    """Losses for one batch of a Hypencoder or bi-encoder (both give q-nets, ``qnets_from_states``).

    ``states``/``mask``: query token states (B, n, h); ``items``: passage vectors (B, 1+K, h) with the positive
    first; ``labels``: teacher scores (B, 1+K) or None; ``extra``: shared passages (R, h) added as CE columns.
    Returns margin_mse, cross_entropy and total."""
    b, m, h = items.shape
    qnets = model.qnets_from_states(states, mask, bf16=bf16, detach=False)
    own = qnets.forward(model.passage_side(items))
    out = {}
    total = own.new_zeros(())
    if margin_mse_weight:
        if labels is None:
            raise ValueError("margin-MSE needs teacher scores (the 'score' of every item)")
        out["margin_mse"] = margin_mse(own, labels)
        total = total + margin_mse_weight * out["margin_mse"]
    if cross_entropy_weight:
        if use_in_batch_negatives:
            cols = items[:, 0] if only_use_first_item else items.reshape(b * m, h)
            if extra is not None and len(extra):
                cols = torch.cat([cols, extra.to(cols.dtype)])
            matrix = qnets.forward(model.passage_side(cols).unsqueeze(0).expand(b, -1, -1))
            targets = in_batch_targets(b, m, only_use_first_item, device=matrix.device)
        else:
            matrix, targets = own, torch.zeros(b, dtype=torch.long, device=own.device)
        out["cross_entropy"] = cross_entropy(matrix, targets, scale=ce_scale * model.logit_scale)
        total = total + cross_entropy_weight * out["cross_entropy"]
    out["total"] = total
    return out
