"""``python -m pyserini_hypencoder.encode input --corpus ... output --embeddings ... encoder --encoder ...``"""
import sys

from ..cli import run_cli
from ._cli import PROG, main

if __name__ == "__main__":
    sys.exit(run_cli(main, None, prog=PROG))
