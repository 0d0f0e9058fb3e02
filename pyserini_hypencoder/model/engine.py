"""How :class:`~pyserini_hypencoder.model.qnet.QNetBatch` schedules its work (the maths lives in ``qnet.py``).

Two engines compute the same scores (docs/speed.md): ``per_query``, the default, runs each q-net over cache-sized
chunks with the queries split over single-threaded Python workers (86-95% of the GEMM peak on this project's
CPUs; on CUDA each q-net takes the whole block), and ``batched`` runs all queries and documents in one pass
(33-62%: memory-bound).  ``qbatched`` is the accelerator path (:func:`qbatched_score`): the first layer of all Q
q-nets as one GEMM over the shared document block, each following layer as one batched GEMM, and the last block's
layer norm, residual and final product folded into one reduction; with ``ScoringConfig(compile=True)`` its
element-wise epilogues go through ``torch.compile`` (pure torch otherwise, so it runs on any CPU).
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Optional

import torch

ENGINES = ("per_query", "batched", "qbatched")
# Bytes of (block, width) fp32 activations per exact-search block: the read size and the top-k merge interval
# (64 MiB: 21,845 rows at width 768, 43,690 at 384; the batched engine divides it by Q).
ACTIVATION_BUDGET = 64 * 2 ** 20
# The qbatched engine on an accelerator: (Q, block, width) fp32 activations per block (2 GiB: 21,845 rows at Q=32,
# width 768), large enough that every GEMM runs near the card's peak.
ACCELERATOR_ACTIVATION_BUDGET = 2 * 2 ** 30


@dataclass(frozen=True)
class ScoringConfig:
    """``engine``: None picks the fastest for the device; ``parallel_queries``: spread queries over CPU worker
    threads; ``fuse_last_block``: fold the last block's layer norm, residual and final product into one reduction;
    ``chunk_elements``: rows x width of the activations one q-net works on at a time (cache-resident);
    ``compile``: the qbatched engine's epilogues through ``torch.compile`` (falls back to eager if it fails)."""

    engine: Optional[str] = None
    parallel_queries: bool = True
    fuse_last_block: bool = True
    chunk_elements: int = 2 ** 20
    compile: bool = False

    def __post_init__(self):
        self.engine_for(None)   # an unknown engine fails here

    def engine_for(self, device: Optional[torch.device], engine: Optional[str] = None) -> str:
        """The engine to run on ``device``: ``engine`` if given, else the configured one, else the fastest."""
        chosen = engine or self.engine or "per_query"
        if chosen not in ENGINES:
            raise ValueError(f"unknown scoring engine {chosen!r}; expected one of {', '.join(ENGINES)}")
        return chosen

    def chunk_rows(self, width: int) -> int:
        """Rows one q-net scores per call in the per_query engine."""
        return max(64, self.chunk_elements // max(1, width))

    def block_rows(self, width: int, queries: int, device: torch.device) -> int:
        """Documents per exact-search block for q-nets of hidden ``width``."""
        engine = self.engine_for(device)
        per_row = 4 * width * (queries if engine in ("batched", "qbatched") else 1)
        accelerator = device is not None and torch.device(device).type != "cpu"
        budget = ACCELERATOR_ACTIVATION_BUDGET if engine == "qbatched" and accelerator else ACTIVATION_BUDGET
        return int(max(256, budget // per_row))


DEFAULT_CONFIG = ScoringConfig()

_POOL_LOCK = threading.Lock()
_POOLS: dict = {}


def run_over_queries(q: int, work: Callable[[range], None], config: ScoringConfig = DEFAULT_CONFIG) -> None:
    """Call ``work(query_ids)`` on disjoint subsets of ``range(q)``, in parallel CPU workers where that helps.

    Workers run with one torch thread each; the process setting comes back afterwards.  Only the main thread
    fans out (a worker, or a second caller meanwhile, runs its work inline)."""
    threads = torch.get_num_threads()
    if (not config.parallel_queries or threads <= 1 or q <= 1
            or threading.current_thread() is not threading.main_thread() or not _POOL_LOCK.acquire(blocking=False)):
        work(range(q))
        return
    try:
        workers = min(threads, q)
        pool = _POOLS.get(workers)
        if pool is None:
            # each worker sets its own thread count once: a new thread otherwise starts with the process default,
            # and its first calls then run multi-threaded kernels (scores that differ in the last bit call to call)
            pool = _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="qnet",
                                                        initializer=torch.set_num_threads, initargs=(1,))
        torch.set_num_threads(1)
        try:
            for future in [pool.submit(work, range(w, q, workers)) for w in range(workers)]:
                future.result()
        finally:
            torch.set_num_threads(threads)
    finally:
        _POOL_LOCK.release()


# -- the qbatched engine ---------------------------------------------------------------------------------------
def _epilogue(h: torch.Tensor, bias: torch.Tensor, x: Optional[torch.Tensor], act: Callable, residual: bool,
              layer_norm: bool, norm_first: bool, eps: float) -> torch.Tensor:
    """Bias, activation, layer norm and residual of one block, in fp32 (x: the block's input, for the residual)."""
    y = act(h.float() + bias)
    if layer_norm and (norm_first or not residual):
        y = torch.nn.functional.layer_norm(y, y.shape[-1:], eps=eps)
    if residual:
        y = y + x.float()
        if layer_norm and not norm_first:
            y = torch.nn.functional.layer_norm(y, y.shape[-1:], eps=eps)
    return y


def _fused_last(h: torch.Tensor, bias: torch.Tensor, w: torch.Tensor, act: Callable, eps: float) -> torch.Tensor:
    """``LN(act(h + b)) . w`` without writing the normalised activations: ``(y.w - mean(y) sum(w)) / sd(y)``.
    h (Q, M, o), bias (Q, 1, o), w (Q, o, 1) fp32 -> (Q, M)."""
    y = act(h.float() + bias)
    var, mean = torch.var_mean(y, dim=-1, unbiased=False)
    return (torch.bmm(y, w).squeeze(-1) - mean * w.sum(1)) * torch.rsqrt(var + eps)


_COMPILED: dict = {}


def _maybe_compiled(fn: Callable, enabled: bool) -> Callable:
    """``torch.compile(fn)`` once per process when ``enabled`` (eager when compiling is unavailable)."""
    if not enabled:
        return fn
    if fn not in _COMPILED:
        try:
            _COMPILED[fn] = torch.compile(fn, dynamic=True)
        except Exception:   # no compiler backend here: the eager function computes the same
            _COMPILED[fn] = fn
    return _COMPILED[fn]


def qbatched_score(weights, biases, spec, act: Callable, compute_dtype: torch.dtype, docs: torch.Tensor, *,
                   eps: float, fuse_last_block: bool = True, compile: bool = False) -> torch.Tensor:
    """Scores of N shared documents under Q q-nets -> (Q, N) fp32.

    ``weights[j]`` (Q, in_j, out_j) in ``compute_dtype`` (the last fp32), ``biases[j]`` (Q, 1, out_j) fp32, ``docs``
    (N, d) in ``compute_dtype``.  Layer 0 is one (N, d) x (d, Q out_0) GEMM; layer j > 0 one bmm over the Q q-nets;
    products in ``compute_dtype``, everything else fp32 (the same arithmetic as the other engines)."""
    q, n, d = weights[0].shape[0], docs.shape[0], docs.shape[1]
    out0 = weights[0].shape[2]
    hidden = len(weights) - 1
    epilogue, fused_last = _maybe_compiled(_epilogue, compile), _maybe_compiled(_fused_last, compile)
    w0 = weights[0].permute(1, 0, 2).reshape(d, q * out0)
    h = (docs @ w0).view(n, q, out0).transpose(0, 1)        # (Q, N, out_0), one GEMM for every q-net
    x = docs.unsqueeze(0)                                     # the input of block 0, shared by the q-nets
    norm_first = spec.layer_norm_before_residual
    for j in range(hidden):
        if j:
            h = torch.bmm(x if x.dtype == compute_dtype else x.to(compute_dtype), weights[j])
        residual = spec.residual_at(j)
        if j == hidden - 1 and fuse_last_block and spec.do_layer_norm and (norm_first or not residual):
            score = fused_last(h, biases[j], weights[-1], act, eps)
            if residual:   # w . x, the residual's share of the final product
                if j == 0:
                    score = score + (docs.float() @ weights[-1][:, :, 0].T).T
                else:
                    score = score + torch.bmm(x.float(), weights[-1]).squeeze(-1)
            return score
        x = epilogue(h, biases[j], x, act, residual, spec.do_layer_norm, norm_first, eps)
    return torch.bmm(x.float().expand(q, -1, -1) if x.shape[0] != q else x.float(), weights[-1]).squeeze(-1)
