"""A batch of q-nets: per-query MLP weights that score document vectors.

A q-net is ``L - 1`` dense blocks followed by a final linear layer without bias::

    x_{j+1} = LN(act(x_j W_j + b_j)) (+ x_j, the residual)      j = 0 .. L-2
    score   = x_{L-1} W_{L-1}

LN has no affine parameters (eps 1e-5).  In bf16 mode the matrix products run in
bf16 while bias, activation, layer norm, residual and the final product run in
fp32, which keeps scores stable near the top-k boundary.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from .engine import DEFAULT_CONFIG, ScoringConfig, qbatched_score, run_over_queries

ACTIVATIONS = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "leaky_relu": F.leaky_relu,
}
LAYER_NORM_EPS = 1e-5
# In-place variants used by the inference fast path (same maths, no extra buffer).
_INPLACE_ACTIVATIONS = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "sigmoid": torch.sigmoid_,
    "leaky_relu": lambda x: F.leaky_relu(x, inplace=True),
}
# Fused layer norm: rows whose variance is below this fraction of their squared mean use the plain layer norm.
FUSED_VAR_MIN = 1e-2


def get_activation(name: str):
    """Return the activation function called ``name`` or raise a clear error."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}") from None


@dataclass(frozen=True)
class QNetSpec:
    """Shape and block settings shared by every q-net a model produces."""

    vector_dimensions: tuple
    activation: str = "relu"
    do_layer_norm: bool = True
    do_residual: bool = True
    do_residual_on_last: bool = False
    layer_norm_before_residual: bool = True

    def __post_init__(self):
        dims = tuple(int(d) for d in self.vector_dimensions)
        object.__setattr__(self, "vector_dimensions", dims)
        if len(dims) < 2 or dims[-1] != 1:
            raise ValueError(f"vector_dimensions must end in 1 and have at least 2 entries, got {list(dims)}")
        get_activation(self.activation)
        for j in range(len(dims) - 2):
            if self.residual_at(j) and dims[j] != dims[j + 1]:
                raise ValueError(
                    f"residual connection at q-net block {j} needs equal dimensions, got {dims[j]} -> {dims[j + 1]}")

    @property
    def num_layers(self) -> int:
        """Number of weight matrices (hidden blocks + final linear)."""
        return len(self.vector_dimensions) - 1

    @property
    def input_dim(self) -> int:
        return self.vector_dimensions[0]

    def residual_at(self, j: int) -> bool:
        last_block = j == len(self.vector_dimensions) - 3
        return self.do_residual and (self.do_residual_on_last or not last_block)

    def flops_per_document(self) -> int:
        """Multiply-adds x 2 for scoring one document with one q-net."""
        d = self.vector_dimensions
        return 2 * sum(d[i] * d[i + 1] for i in range(len(d) - 1))

    def to_converter_kwargs(self) -> dict:
        """The original implementation's ``converter_kwargs`` (config.json)."""
        return {"vector_dimensions": list(self.vector_dimensions),
                **{key: getattr(self, field) for key, field in _CONVERTER_KEYS.items()}}

    @classmethod
    def from_converter_kwargs(cls, kwargs: dict, vector_dimensions: Optional[Sequence[int]] = None) -> "QNetSpec":
        dims = vector_dimensions if vector_dimensions is not None else kwargs.get("vector_dimensions")
        if dims is None:
            raise ValueError("q-net vector_dimensions are not known")
        return cls(tuple(dims), **{field: kwargs[key] for key, field in _CONVERTER_KEYS.items() if key in kwargs})


# converter_kwargs key -> QNetSpec field
_CONVERTER_KEYS = {"activation_type": "activation", "do_layer_norm": "do_layer_norm", "do_residual": "do_residual",
                   "do_residual_on_last": "do_residual_on_last",
                   "layer_norm_before_residual": "layer_norm_before_residual"}


def _as_tensor(x: Union[np.ndarray, torch.Tensor], device, dtype) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return x.to(device=device, dtype=dtype)


class QNetBatch:
    """Q q-nets, one per query, stored as stacked weights.

    ``weights[i]`` has shape (Q, in_i, out_i) and ``biases[j]`` (Q, 1, out_j).
    ``compute_dtype`` is the dtype of the matrix products (float32 or bfloat16);
    ``detach=False`` keeps the graph so that training can backpropagate into the
    hyper head through :meth:`forward`.  ``config`` says how :meth:`score` schedules
    its work (see :mod:`.engine`); :meth:`with_config` gives a copy with other settings.
    """

    def __init__(self, weights: List[torch.Tensor], biases: List[torch.Tensor], spec: QNetSpec,
                 compute_dtype: torch.dtype = torch.float32, detach: bool = True,
                 config: ScoringConfig = DEFAULT_CONFIG):
        if len(weights) != spec.num_layers or len(biases) != spec.num_layers - 1:
            raise ValueError("q-net weights/biases do not match the q-net spec")
        self.spec = spec
        self.compute_dtype = compute_dtype
        self.config = config
        self._act = get_activation(spec.activation)
        if detach:  # inference: drop the autograd graph of the hyper head
            weights, biases = [w.detach() for w in weights], [b.detach() for b in biases]
        # Matrix products run in compute_dtype; the final (d -> 1) product stays fp32.
        self.weights = [w.to(compute_dtype).contiguous() for w in weights[:-1]] + [weights[-1].float()]
        self.biases = [b.float() for b in biases]

    # -- basic properties -------------------------------------------------
    def __len__(self) -> int:
        return self.weights[0].shape[0]

    @property
    def device(self) -> torch.device:
        return self.weights[0].device

    @property
    def input_dim(self) -> int:
        return self.spec.input_dim

    def __getitem__(self, index) -> "QNetBatch":
        """Select q-nets by an int, slice or index tensor (keeps the batch axis)."""
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:   # also what ends iteration: list(qnets) is one batch per query
                raise IndexError(f"q-net {index} out of range for a batch of {n}")
            index = slice(index % n, index % n + 1)
        return self._from_parts([w[index] for w in self.weights], [b[index] for b in self.biases])

    def __iter__(self):
        """One single-query batch per q-net, in order."""
        return (self[i] for i in range(len(self)))

    def _from_parts(self, weights, biases, compute_dtype: Optional[torch.dtype] = None,
                    config: Optional[ScoringConfig] = None) -> "QNetBatch":
        """A batch with other weights and this one's spec (and dtype and config, unless given)."""
        obj = QNetBatch.__new__(QNetBatch)
        obj.spec, obj._act = self.spec, self._act
        obj.compute_dtype = compute_dtype or self.compute_dtype
        obj.config = config or self.config
        obj.weights, obj.biases = list(weights), list(biases)
        return obj

    def with_config(self, **changes) -> "QNetBatch":
        """The same q-nets scored with other :class:`~.engine.ScoringConfig` settings (e.g. ``engine="batched"``)."""
        return self._from_parts(self.weights, self.biases, config=dataclasses.replace(self.config, **changes))

    @classmethod
    def concat(cls, batches: Sequence["QNetBatch"]) -> "QNetBatch":
        first = batches[0]
        n = len(first.weights)
        weights = [torch.cat([b.weights[i] for b in batches]) for i in range(n)]
        biases = [torch.cat([b.biases[i] for b in batches]) for i in range(n - 1)]
        return first._from_parts(weights, biases)

    def to(self, device=None, compute_dtype: Optional[torch.dtype] = None) -> "QNetBatch":
        dtype = compute_dtype or self.compute_dtype
        weights = [w.to(device=device, dtype=dtype) for w in self.weights[:-1]] + [self.weights[-1].to(device)]
        return self._from_parts(weights, [b.to(device) for b in self.biases], dtype)

    # -- scoring ---------------------------------------------------------
    def _block(self, j: int, h: torch.Tensor, x: Optional[torch.Tensor]) -> torch.Tensor:
        """Bias, activation, layer norm and residual of dense block j, in fp32."""
        y = self._act(h.float() + self.biases[j])
        spec = self.spec
        residual = x is not None and spec.residual_at(j)
        if spec.do_layer_norm and (spec.layer_norm_before_residual or not residual):
            y = F.layer_norm(y, y.shape[-1:], eps=LAYER_NORM_EPS)
        if residual:
            y = y + x.float()
            if spec.do_layer_norm and not spec.layer_norm_before_residual:
                y = F.layer_norm(y, y.shape[-1:], eps=LAYER_NORM_EPS)
        return y

    def _forward(self, first: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Run the q-nets given the first product ``first`` = x0 W_0, shape (Q, M, out_0)."""
        x = self._block(0, first, x0)
        for j in range(1, len(self.weights) - 1):
            h = torch.bmm(x.to(self.compute_dtype), self.weights[j])
            x = self._block(j, h, x)
        return torch.bmm(x, self.weights[-1]).squeeze(-1)

    def _fuses_last_block(self) -> bool:
        """Whether the per_query engine folds the last block's layer norm, residual and final product together
        (needs the layer norm to come before the residual, or no residual)."""
        spec, last = self.spec, len(self.weights) - 2
        return self.config.fuse_last_block and spec.do_layer_norm and (spec.layer_norm_before_residual or not spec.residual_at(last))

    def _score_rows(self, i: int, x: torch.Tensor, x_fp32: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Inference fast path: q-net ``i`` on contiguous rows ``x`` (M, d) in compute dtype -> (M,) fp32.

        Same maths as :meth:`forward` but with 2-D products, the bias folded into the fp32 product,
        and in-place activation and residual, so that each step touches one cache-resident buffer.
        With ``config.fuse_last_block`` the last block's layer norm, residual and final product become one
        reduction: ``w . (LN(y) + h) = (y . w - mean(y) sum(w)) / sqrt(var(y) + eps) + h . w``, so the
        normalised activations are never written.  ``x_fp32``: ``x`` in fp32 when the caller has it.
        """
        spec, cdt = self.spec, self.compute_dtype
        act = _INPLACE_ACTIVATIONS.get(spec.activation)
        h = x
        fused = len(self.weights) - 2 if self._fuses_last_block() else -1
        for j in range(len(self.weights) - 1):
            w, b = self.weights[j][i], self.biases[j][i]
            inp = h if h.dtype == cdt else h.to(cdt)
            if cdt == torch.float32:
                y = torch.addmm(b, inp, w)
            else:  # bf16 product, fp32 bias (an explicit fp32 copy + in-place add: a mixed-dtype add is 2x slower)
                y = torch.mm(inp, w).float().add_(b)
            y = act(y) if act is not None else self._act(y)
            residual = spec.residual_at(j)
            if j == fused:
                w_out = self.weights[-1][i][:, 0]
                width = y.shape[1]
                mean = y.sum(1).div_(width)
                # var = E[y^2] - mean^2 (vector_norm and mv are single fast passes; torch.var_mean is not);
                # rows where that difference would lose precision are redone with the plain layer norm
                var = torch.linalg.vector_norm(y, dim=1).square_().div_(width).sub_(mean * mean)
                score = (torch.mv(y, w_out) - mean * w_out.sum()) * torch.rsqrt(var.clamp(min=0) + LAYER_NORM_EPS)
                unstable = var < FUSED_VAR_MIN * mean * mean
                if bool(unstable.any()):
                    rows = unstable.nonzero().squeeze(1)
                    score[rows] = torch.mv(F.layer_norm(y[rows], (width,), eps=LAYER_NORM_EPS), w_out)
                if residual:
                    source = x_fp32 if (j == 0 and x_fp32 is not None) else h
                    score += torch.mv(source if source.dtype == torch.float32 else source.float(), w_out)
                return score
            if spec.do_layer_norm and (spec.layer_norm_before_residual or not residual):
                y = F.layer_norm(y, y.shape[-1:], eps=LAYER_NORM_EPS)
            if residual:
                y.add_(h)
                if spec.do_layer_norm and not spec.layer_norm_before_residual:
                    y = F.layer_norm(y, y.shape[-1:], eps=LAYER_NORM_EPS)
            h = y
        return torch.mv(h, self.weights[-1][i][:, 0])

    @torch.no_grad()
    def score(self, doc_vectors: Union[np.ndarray, torch.Tensor], *, engine: Optional[str] = None) -> torch.Tensor:
        """Score N shared documents with every q-net: (N, d) -> (Q, N) float32.

        One call scores every pair; how the work is cut up is the engine's (``engine`` overrides the
        configured one; see :mod:`.engine`).  Callers bound N (exact search scores an index in blocks).
        """
        docs = _as_tensor(doc_vectors, self.device, self.compute_dtype)
        if docs.ndim != 2 or docs.shape[1] != self.input_dim:
            raise ValueError(f"expected document vectors of shape (N, {self.input_dim}), got {tuple(docs.shape)}")
        q, n = len(self), docs.shape[0]
        if n == 0:
            return torch.empty(q, 0, dtype=torch.float32, device=self.device)
        if len(self.weights) == 1:  # a q-net with no hidden block: a plain linear scorer
            return torch.matmul(docs.float(), self.weights[0].squeeze(-1).T).T.contiguous()
        docs = docs.contiguous()
        chosen = self.config.engine_for(docs.device, engine)
        if chosen == "qbatched":
            return qbatched_score(self.weights, self.biases, self.spec, self._act, self.compute_dtype, docs,
                                  eps=LAYER_NORM_EPS, fuse_last_block=self.config.fuse_last_block,
                                  compile=self.config.compile)
        if chosen == "batched":
            w0 = self.weights[0]
            out0 = w0.shape[2]
            first = (docs @ w0.permute(1, 0, 2).reshape(self.input_dim, q * out0)).view(n, q, out0).transpose(0, 1)
            return self._forward(first, docs.unsqueeze(0) if self.spec.residual_at(0) else None)
        out = torch.empty(q, n, dtype=torch.float32, device=self.device)
        if docs.is_cuda:
            for i in range(q):
                out[i] = self._score_rows(i, docs)
            return out
        step = self.config.chunk_rows(max(self.spec.vector_dimensions))
        # the fused last block reads a (bf16) input again in fp32 when it is the only block and has a residual
        share = (self._fuses_last_block() and self.compute_dtype != torch.float32 and len(self.weights) == 2
                 and self.spec.residual_at(0))

        def work(queries):
            for start in range(0, n, step):  # a cache-sized chunk of documents, then every query on it
                chunk = docs[start:start + step]
                chunk_fp32 = chunk.float() if share else None
                for i in queries:
                    out[i, start:start + step] = self._score_rows(i, chunk, chunk_fp32)
        run_over_queries(q, work, self.config)
        return out

    @torch.no_grad()
    def score_candidates(self, candidate_vectors: Union[np.ndarray, torch.Tensor], *,
                         engine: Optional[str] = None) -> torch.Tensor:
        """Score each query's own candidates: (Q, K, d) -> (Q, K) float32 (``engine`` as in :meth:`score`)."""
        cands = _as_tensor(candidate_vectors, self.device, self.compute_dtype)
        if cands.ndim != 3 or cands.shape[0] != len(self) or cands.shape[2] != self.input_dim:
            raise ValueError(f"expected candidate vectors of shape ({len(self)}, K, {self.input_dim}), "
                             f"got {tuple(cands.shape)}")
        q, m = cands.shape[0], cands.shape[1]
        if self.config.engine_for(cands.device, engine) in ("batched", "qbatched") or len(self.weights) == 1 or m == 0 or cands.is_cuda:
            return self.forward(cands)
        out = torch.empty(q, m, dtype=torch.float32, device=self.device)
        step = self.config.chunk_rows(max(self.spec.vector_dimensions))

        def work(queries):
            for i in queries:
                rows = cands[i]
                for start in range(0, m, step):
                    out[i, start:start + step] = self._score_rows(i, rows[start:start + step].contiguous())
        run_over_queries(q, work, self.config)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Differentiable scoring of (Q, M, d) inputs -> (Q, M); used in training."""
        x = x.to(self.compute_dtype)
        if len(self.weights) == 1:
            return torch.bmm(x.float(), self.weights[0]).squeeze(-1)
        first = torch.bmm(x, self.weights[0])
        return self._forward(first, x)
