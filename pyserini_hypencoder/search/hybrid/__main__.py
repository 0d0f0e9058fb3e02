"""``python -m pyserini_hypencoder.search.hybrid``: see :mod:`pyserini_hypencoder.search.hybrid._main`."""
import sys

from ...cli import run_cli
from ._main import PROG, main

if __name__ == "__main__":
    sys.exit(run_cli(main, prog=PROG))
