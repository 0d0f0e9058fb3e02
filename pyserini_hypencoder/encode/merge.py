"""``python -m pyserini_hypencoder.encode.merge --shards DIR... --output DIR``: join shard indexes."""
import sys

from ..cli import run_cli
from ._cli import PROG, merge_main

if __name__ == "__main__":
    sys.exit(run_cli(merge_main, None, prog=f"{PROG}.merge"))
