"""``python -m pyserini_hypencoder.search``: see :mod:`pyserini_hypencoder.search._main`."""
import sys

from ..cli import run_cli
from ._main import main

if __name__ == "__main__":
    sys.exit(run_cli(main, prog="python -m pyserini_hypencoder.search"))
