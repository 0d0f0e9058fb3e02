"""Training Hypencoders (and the bi-encoder control): ``python -m pyserini_hypencoder.train``."""
from .config import TrainConfig
from .losses import cross_entropy, margin_mse
