"""The search strategies, each declared once: name, implementation, the index structure it needs, parameters.

The search CLI's flags, their ``--help`` defaults, parameter validation and :class:`HypencoderSearcher` all read
:data:`STRATEGIES`.  This module is data only (no torch): implementations are named ``"module:function"`` and
imported on first use.  An implementation is called as ``function(qnets, index, k, **params)`` and returns a
:class:`~pyserini_hypencoder.topk.TopK`.  docs/architecture.md says how to add a strategy.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._typed import to_type


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a strategy; its CLI flag is ``--STRATEGY-NAME`` (``aliases``: older spellings)."""

    name: str
    type: type
    default: Any
    help: str
    choices: Tuple = ()
    aliases: Tuple[str, ...] = ()
    minimum: Any = 1            # for int and float parameters

    def check(self, value, strategy: str):
        """``value`` as this parameter's type (a CLI string, or a JSON number/bool), or a one-line ValueError."""
        where = f"{strategy} search parameter {self.name!r}"
        if value is None and self.default is None:
            return None
        try:
            value = to_type(value, self.type)
        except ValueError:
            raise ValueError(f"{where} expects {self.type.__name__}, got {value!r}") from None
        if self.choices and value not in self.choices:
            raise ValueError(f"{where} must be one of {', '.join(map(str, self.choices))}, got {value!r}")
        if self.type in (int, float) and value < self.minimum:
            raise ValueError(f"{where} must be at least {self.minimum}, got {value!r}")
        return value


@dataclass(frozen=True)
class Strategy:
    name: str
    implementation: str            # "module:function"
    summary: str
    params: Tuple[Param, ...] = ()
    structure: Optional[str] = None   # what ``python -m pyserini_hypencoder.index --add STRUCTURE`` builds
    exhaustive: bool = False          # scores every document (ties at the cut can be completed by going deeper)

    @property
    def defaults(self) -> Dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        accepted = ", ".join(p.name for p in self.params) or "none"
        raise ValueError(f"unknown {self.name} search parameter {name!r}; expected one of: {accepted}")

    def resolve(self, params: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
        """The declared defaults updated with ``params``, each checked; unknown names are a ValueError."""
        values = self.defaults
        for name, value in (params or {}).items():
            values[name] = self.param(name).check(value, self.name)
        return values

    def load(self) -> Callable:
        module, _, function = self.implementation.partition(":")
        return getattr(import_module(module), function)

    def flag(self, param: Param) -> str:
        """``--STRATEGY-PARAM``; a bool parameter that defaults to True is switched off by ``--STRATEGY-no-PARAM``."""
        negate = "no-" if param.type is bool and param.default else ""
        return f"--{self.name}-{negate}{param.name.replace('_', '-')}"


STRATEGIES: Dict[str, Strategy] = {s.name: s for s in (
    Strategy("exact", "pyserini_hypencoder.search.exact:exact_search", "every document scored by every q-net",
             (Param("block_size", int, None, "documents per scoring block (default: sized from the q-net width)",
                    aliases=("--block-size",)),), exhaustive=True),
    Strategy("graph", "pyserini_hypencoder.ann.graph:graph_search",
             "a walk over the index's neighbour graph, scoring the neighbours of the best candidates",
             (Param("entry_points", int, 1000, "initial candidates shared by all queries", aliases=("--entry-points",)),
              Param("n_candidates", int, 64, "candidates expanded per iteration", aliases=("--n-candidates",)),
              Param("max_iter", int, 16, "iterations", aliases=("--max-iter",)),
              Param("early_stop", bool, True, "stop a query once no candidate enters its top k",
                    aliases=("--no-early-stop",)),
              Param("variant", str, "reference", "the original code's walk (reference) or the paper's Algorithm 1",
                    choices=("reference", "paper")),
              Param("seed", int, 43, "seed of the entry points", minimum=0),
              Param("ivf_nprobe", int, None, "start from the q-net's best IVF lists instead of shared entry points "
                                             "(needs the ivf structure too)")),
             structure="graph"),
    Strategy("ivf", "pyserini_hypencoder.ann.ivf:ivf_search",
             "the documents of each q-net's best-scoring k-means lists",
             (Param("nprobe", int, 64, "lists probed per query", aliases=("--nprobe",)),), structure="ivf"),
    Strategy("surrogate", "pyserini_hypencoder.ann.surrogate:surrogate_search",
             "inner-product pre-selection by each q-net's linear surrogate, the q-net rescoring the best",
             (Param("candidates", int, 1000, "documents the q-net rescores after the pre-selection",
                    aliases=("--candidates",)),
              Param("anchors", int, 256, "sampled documents the surrogate is fitted on"),
              Param("anchor_top", int, 32, "best-scoring anchors whose gradients are averaged"),
              Param("seed", int, 0, "seed of the anchor sample", minimum=0),
              Param("first_stage", str, "auto", "pre-selection: scan all N inner products, or the index's faiss-ivf "
                                                "structure (--add faiss-ivf); auto = faiss-ivf when present; scan "
                                                "for deep, far-from-linear q-nets (docs/speed.md)",
                    choices=("auto", "scan", "faiss-ivf")),
              Param("nprobe", int, 256, "faiss-ivf lists probed per query by the pre-selection (256 of 4,096 lists: "
                                        "recall@100 0.969 at 8.8M, docs/speed.md)"))),
)}


def get_strategy(name: str) -> Strategy:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown search strategy {name!r}; expected one of {', '.join(STRATEGIES)}") from None
