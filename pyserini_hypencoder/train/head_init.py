"""Starting points for a new hyper head (``head_init``): the paper's random start is ``HyperHead.reset_parameters``;
"warm" and "cosine" start the q-net as a (scaled) dot product with the mean-pooled query, so training starts from
the zero-shot backbone instead of noise."""
from __future__ import annotations

import math
from typing import Optional

import torch


def _start_near_linear(head, name: str):
    """Checks shared by the warm and cosine starts, and their common first steps: every generated weight loses its
    query-independent base (so the hidden ``x W_j`` start near 0 and the residual carries the passage vector to
    the last layer), and the last weight's key projection and output bias are zeroed (its attention pools the
    query tokens by their mean).  Returns (hidden size h, index k of the last weight)."""
    spec = head.spec
    if any(not spec.residual_at(j) for j in range(spec.num_layers - 1)):
        raise ValueError(f"head_init {name!r} needs do_residual and do_residual_on_last (a residual on every block)")
    h, k = head.hidden_size, spec.num_layers - 1
    if spec.vector_dimensions[k] != h:
        raise ValueError(f"head_init {name!r} needs the last q-net layer to have the backbone's width")
    for i in range(k + 1):
        head.hyper_base_matrices[i].zero_()
    for tensor in (head.key_projections[k].weight, head.key_projections[k].bias, head.weight_hyper_projection[k].bias):
        tensor.zero_()
    return h, k


@torch.no_grad()
def warm_start_head(head, passage_vectors: Optional[torch.Tensor] = None, *, seed: int = 1) -> None:
    """Start the q-net as a (projected) dot product with the mean-pooled query, plus near-zero hidden layers.

    The last weight's value/output projections become ``[A; -A]`` / ``[A^T, -A^T]``, so that ``ReLU`` loses
    nothing and ``w_last = A^T A q`` up to the layer norm's scale.  ``A`` holds the top h/2 principal directions of the passage vectors (a random
    orthonormal basis without them).  Needs a residual connection on every hidden block.
    """
    h, k = _start_near_linear(head, "warm")
    basis = None
    if passage_vectors is not None and passage_vectors.shape[0] >= 2:
        basis = torch.linalg.svd(passage_vectors.float() - passage_vectors.float().mean(0), full_matrices=False).Vh
    if basis is None or basis.shape[0] < h // 2:
        g = torch.Generator().manual_seed(seed)
        basis = torch.linalg.qr(torch.randn(h, h, generator=g))[0].T
    a = basis[: h // 2].to(head.key_projections[k].weight.dtype)
    head.value_projections[k].weight.zero_()
    head.value_projections[k].weight[: 2 * a.shape[0]] = torch.cat([a, -a])
    head.value_projections[k].bias.zero_()
    head.weight_hyper_projection[k].weight.zero_()
    head.weight_hyper_projection[k].weight[:, : 2 * a.shape[0]] = torch.cat([a, -a]).T


# Value-projection bias of the "cosine" start: keeps ReLU the identity for mean-pooled MiniLM-like token states
# (|values| < 1 typically), small enough that the shifted values keep their precision in bf16.
COSINE_SHIFT = 1.0
COSINE_LOGIT_SCALE = 20.0


@torch.no_grad()
def cosine_start_head(head) -> None:
    """Start the q-net as a scaled cosine between the (centred) mean-pooled query and the passage vector.

    The last weight's attention query is zero too, its value
    projection is the identity plus ``COSINE_SHIFT`` (ReLU passes everything, the layer norm removes the
    shift) and its output projection ``s I`` with ``s = 20 / sqrt(h)``, so ``w_last = 20 * centred(m) /
    |centred(m)|``.  The trainer keeps the pooling, the output projection and the base of the last weight
    fixed (:func:`fixed_parameter_names`): ``|w_last|`` stays 20, like the control's cosine with logit scale 20,
    while the value projection and biases learn.
    """
    h, k = _start_near_linear(head, "cosine")
    eye = torch.eye(h, dtype=head.value_projections[k].weight.dtype)
    head.weight_query_embeddings[k].zero_()
    head.value_projections[k].weight.copy_(eye)
    head.value_projections[k].bias.fill_(COSINE_SHIFT)
    head.weight_hyper_projection[k].weight.copy_(eye * (COSINE_LOGIT_SCALE / math.sqrt(h)))


def fixed_parameter_names(model, cfg) -> set:
    """Hyper-head tensors that a "cosine" start keeps at their initial values: the last weight's token pooling
    (attention query and key projection), output projection and base."""
    if cfg.head_init != "cosine" or model.head is None:   # a bi-encoder has no hyper head
        return set()
    k = model.spec.num_layers - 1
    return last_generator_names(k) - {f"head.value_projections.{k}.weight", f"head.value_projections.{k}.bias"}


def last_generator_names(k: int) -> set:
    """Parameter names of the hyper-head parts that generate the q-net's last weight (index ``k``)."""
    names = {f"head.{n}.{k}" for n in ("hyper_base_matrices", "weight_query_embeddings")}
    return names | {f"head.{n}.{k}.{w}" for n in ("weight_hyper_projection", "key_projections", "value_projections")
                    for w in ("weight", "bias")}
