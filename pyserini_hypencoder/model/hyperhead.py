"""The hyper head: query token states -> the weights and biases of a q-net.

Parameter names and shapes follow the published checkpoints (``query_encoder.<name>``),
so a state dict loads without renaming.  Computation for weight i (see docs/model.md)::

    K, V = E Wk_i^T + bk_i, E Wv_i^T + bv_i           (B, n, in_i)
    A    = softmax(Q_i K^T / sqrt(out_i), masked)     (B, out_i, n)
    W_i  = (LN(ReLU(A V)) P_i^T + p_i + base_i)^T     (B, in_i, out_i)

Biases use the same path with a single attention query and a scale of 1.
"""
from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .qnet import LAYER_NORM_EPS, QNetSpec


class HyperHead(nn.Module):
    """Generates q-net parameters from the backbone's query token states."""

    def __init__(self, hidden_size: int, spec: QNetSpec):
        super().__init__()
        dims = spec.vector_dimensions
        if dims[0] != hidden_size:
            # The q-net consumes document vectors, which are backbone states.
            raise ValueError(f"q-net input dimension {dims[0]} must equal the backbone hidden size {hidden_size}")
        self.spec = spec
        self.hidden_size = hidden_size
        n_weights = spec.num_layers
        w_in, w_out = list(dims[:-1]), list(dims[1:])
        b_dim = [dims[j + 1] for j in range(n_weights - 1)]
        self.hyper_base_matrices = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, o, i)) for i, o in zip(w_in, w_out)])
        self.hyper_base_vectors = nn.ParameterList([nn.Parameter(torch.zeros(1, d)) for d in b_dim])
        self.weight_query_embeddings = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, o, i)) for i, o in zip(w_in, w_out)])
        self.bias_query_embeddings = nn.ParameterList([nn.Parameter(torch.zeros(1, 1, d)) for d in b_dim])
        self.weight_hyper_projection = nn.ModuleList([nn.Linear(i, i) for i in w_in])
        self.bias_hyper_projection = nn.ModuleList([nn.Linear(d, d) for d in b_dim])
        kv_dims = w_in + b_dim
        self.key_projections = nn.ModuleList([nn.Linear(hidden_size, d) for d in kv_dims])
        self.value_projections = nn.ModuleList([nn.Linear(hidden_size, d) for d in kv_dims])

    @torch.no_grad()
    def reset_parameters(self, generator: Optional[torch.Generator] = None) -> None:
        """Initialise for training from scratch: the q-net starts near a query-independent base.

        Follows the paper's scheme with the hidden size used where the original hard-codes 768,
        a private generator instead of reseeding torch's global RNG, and all key/value biases zeroed.
        """
        g = generator
        for lin in [*self.weight_hyper_projection, *self.bias_hyper_projection,
                    *self.key_projections, *self.value_projections]:
            bound = 1.0 / math.sqrt(lin.in_features)
            lin.weight.uniform_(-bound, bound, generator=g)
            lin.bias.uniform_(-bound, bound, generator=g)
        h = self.hidden_size
        for i, base in enumerate(self.hyper_base_matrices):
            base.normal_(0.0, math.sqrt(2.0 / base.shape[2]), generator=g)
            self.weight_query_embeddings[i].normal_(0.0, 10.0, generator=g)
            self.weight_hyper_projection[i].weight.normal_(0.0, 1.0 / h ** 2, generator=g)
            self.weight_hyper_projection[i].bias.zero_()
        for j, base in enumerate(self.hyper_base_vectors):
            base.zero_()
            self.bias_query_embeddings[j].normal_(0.0, 10.0, generator=g)
        for lin in [*self.key_projections, *self.value_projections]:
            lin.bias.zero_()

    @staticmethod
    def _attend(states: torch.Tensor, mask_bias: torch.Tensor, query: torch.Tensor, key: nn.Linear,
                value: nn.Linear, projection: nn.Linear, scale: float) -> torch.Tensor:
        keys = key(states)                                       # (B, n, in)
        values = value(states)                                   # (B, n, in)
        logits = torch.matmul(query, keys.transpose(1, 2)) * scale  # (B, out, n)
        attention = torch.softmax(logits.float() + mask_bias, dim=-1).to(values.dtype)
        context = torch.matmul(attention, values)                # (B, out, in)
        hidden = F.layer_norm(F.relu(context).float(), context.shape[-1:], eps=LAYER_NORM_EPS)
        return projection(hidden)

    def forward(self, states: torch.Tensor, attention_mask: torch.Tensor) -> Tuple[List[torch.Tensor],
                                                                                   List[torch.Tensor]]:
        """Token states (B, n, h) and mask (B, n) -> weights [(B, in, out)], biases [(B, 1, out)]."""
        mask_bias = torch.zeros(attention_mask.shape, dtype=torch.float32, device=states.device)
        mask_bias = mask_bias.masked_fill(attention_mask == 0, float("-inf")).unsqueeze(1)  # (B, 1, n)
        n_weights = len(self.hyper_base_matrices)
        weights = []
        for i in range(n_weights):
            out_dim = self.hyper_base_matrices[i].shape[1]
            h = self._attend(states, mask_bias, self.weight_query_embeddings[i], self.key_projections[i],
                             self.value_projections[i], self.weight_hyper_projection[i], 1.0 / math.sqrt(out_dim))
            weights.append((h.float() + self.hyper_base_matrices[i]).transpose(1, 2))
        biases = []
        for j in range(len(self.hyper_base_vectors)):
            k = n_weights + j
            h = self._attend(states, mask_bias, self.bias_query_embeddings[j], self.key_projections[k],
                             self.value_projections[k], self.bias_hyper_projection[j], 1.0)
            biases.append(h.float() + self.hyper_base_vectors[j].unsqueeze(0))
        return weights, biases

    @classmethod
    def spec_from_state_dict(cls, state: dict, prefix: str = "", *, complete: bool = True) -> Tuple[List[int], int]:
        """Infer (vector_dimensions, hidden size) from hyper-head tensors (``complete=False``: some generator
        tensors may be absent, see ``head_init_seed`` in checkpoint.py)."""
        n = 0
        while f"{prefix}hyper_base_matrices.{n}" in state:
            n += 1
        if n == 0:
            raise ValueError("no hyper_base_matrices tensors found")
        dims = [int(state[f"{prefix}hyper_base_matrices.0"].shape[2])]
        dims += [int(state[f"{prefix}hyper_base_matrices.{i}"].shape[1]) for i in range(n)]
        hidden = int(state[f"{prefix}key_projections.0.weight"].shape[1])
        n_keys = sum(1 for k in state if k.startswith(f"{prefix}key_projections.") and k.endswith(".weight"))
        if complete and n_keys != 2 * n - 1:
            raise ValueError(f"expected {2 * n - 1} key_projections for {n} q-net layers, found {n_keys}")
        return dims, hidden
