"""Approximate q-net search: neighbour-graph walks, IVF candidate pools and linear-surrogate pools (docs/speed.md).

Each strategy is declared once in :mod:`pyserini_hypencoder.strategies`; the functions here take a DenseIndex
(``graph_search``, ``ivf_search``, ``surrogate_search``) or explicit vectors and structures (``walk``, ``probe``).
"""
from .graph import GRAPH_FILE, add_graph, build_graph, graph_search, load_graph, walk
from .ivf import IVF_FILE, add_ivf, build_ivf, ivf_candidates, ivf_search, load_ivf, probe
from .surrogate import surrogate_search, surrogate_vectors
