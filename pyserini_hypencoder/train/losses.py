"""Training losses of the Hypencoder paper (§3.2 of the spec), correct for any batch size >= 1.

Scores are ``scores[q, k]`` of query q on its own item k (k = 0 is the positive).  The total loss
is ``sum_i weight_i * loss_i``.
"""
from __future__ import annotations

from typing import Callable, Dict

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


LOSSES: Dict[str, Callable] = {"margin_mse": margin_mse, "cross_entropy": cross_entropy}
