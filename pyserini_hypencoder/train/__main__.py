"""``python -m pyserini_hypencoder.train --config FILE [--setting value ...]``."""
import sys

from .cli import cli

sys.exit(cli())
