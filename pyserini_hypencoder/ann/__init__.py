"""Approximate q-net search: neighbour-graph walks, IVF candidate pools and linear-surrogate pools (docs/speed.md)."""
from .graph import (DEFAULTS as GRAPH_DEFAULTS, GRAPH_FILE, add_graph, build_graph, graph_search, has_graph,
                    load_graph)
from .ivf import DEFAULTS as IVF_DEFAULTS, IVF_FILE, add_ivf, build_ivf, has_ivf, ivf_candidates, ivf_search, load_ivf
from .surrogate import DEFAULTS as SURROGATE_DEFAULTS, surrogate_search, surrogate_vectors

__all__ = ["graph_search", "ivf_search", "surrogate_search", "has_graph", "has_ivf", "build_graph", "build_ivf",
           "add_graph", "add_ivf", "load_graph", "load_ivf", "ivf_candidates", "surrogate_vectors", "GRAPH_DEFAULTS",
           "IVF_DEFAULTS", "SURROGATE_DEFAULTS", "GRAPH_FILE", "IVF_FILE"]
