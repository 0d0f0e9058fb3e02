"""The Hypencoder model: q-nets, hyper head, backbone, checkpoints."""
from .checkpoint import CheckpointError, load_backbone, load_hypencoder, save_hypencoder
from .engine import ScoringConfig
from .hyperhead import HyperHead
from .hypencoder import Hypencoder
from .qnet import QNetBatch, QNetSpec
