"""``python -m pyserini_hypencoder.train --config FILE [--setting value ...]``."""
import sys

from .cli import cli

if __name__ == "__main__":
    sys.exit(cli())
