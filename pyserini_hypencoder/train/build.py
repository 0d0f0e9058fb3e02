"""The model a training run starts from: a new Hypencoder around a backbone, a published or saved checkpoint
(``init_from``), or the bi-encoder control."""
from __future__ import annotations

from ..model.checkpoint import load_backbone, load_hypencoder
from ..model.hypencoder import Hypencoder
from .biencoder import BiEncoder
from .config import TrainConfig


def build_model(cfg: TrainConfig):
    if cfg.model_kind == "biencoder":
        backbone, tokenizer, source = load_backbone(cfg.backbone)
        return BiEncoder(backbone, tokenizer, pooling=cfg.pooling, normalize=cfg.normalize,
                         settings={"backbone": source})
    if cfg.init_from:
        model = load_hypencoder(cfg.init_from)
        dims = list(model.spec.vector_dimensions)
        if cfg.vector_dimensions and list(cfg.vector_dimensions) != dims:
            raise ValueError(f"vector_dimensions {list(cfg.vector_dimensions)} differ from init_from's q-net {dims}")
    else:
        model = Hypencoder.from_backbone(cfg.backbone, vector_dimensions=cfg.vector_dimensions,
                                         num_hidden_layers=cfg.num_hidden_layers, activation=cfg.activation,
                                         do_residual=cfg.do_residual, do_residual_on_last=cfg.do_residual_on_last,
                                         do_layer_norm=cfg.do_layer_norm,
                                         pooling=cfg.pooling, seed=cfg.init_seed)
    model.settings.update({"query_max_length": cfg.query_max_length, "passage_max_length": cfg.passage_max_length,
                           "pooling": model.pooling})
    return model
