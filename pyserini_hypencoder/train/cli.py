"""Argument parsing for ``python -m pyserini_hypencoder.train``: every config field is also a flag."""
from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from ..cli import ArgumentParser, run_cli, setup_logging
from .config import TrainConfig

PROG = "python -m pyserini_hypencoder.train"
# The other CLIs' spellings of the same settings.
ALIASES = {"--data": "data_path"}


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG,
                                description="Train a Hypencoder (or the bi-encoder control). Settings come from "
                                            "--config (YAML or JSON); any flag below overrides the file.")
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file of settings")
    p.add_argument("--resume", action="store_true", help="continue the run saved in --output-dir/checkpoint")
    p.add_argument("--overwrite", action="store_true", help="discard an existing run in --output-dir")
    p.add_argument("--verbose", action="store_true", help="debug logging")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    group = p.add_argument_group("settings (override the config file; a bare boolean flag means true; "
                                 "lists are comma-separated)")
    for f in dataclasses.fields(TrainConfig):
        flags = ["--" + f.name.replace("_", "-")] + [alias for alias, name in ALIASES.items() if name == f.name]
        extra = dict(nargs="?", const="true") if "bool" in str(f.type) else {}   # --bf16 as in encode and search
        group.add_argument(*flags, dest=f.name, metavar=f.name.upper(), default=None, **extra)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = TrainConfig.load(args.config, overrides)
    from .trainer import Trainer
    summary = Trainer(cfg, resume=args.resume, overwrite=args.overwrite).train()
    print(f"trained {summary['steps']} steps in {summary['train_seconds']} s; best dev {summary['best_dev']:.4f} "
          f"at step {summary['best_step']}; model: {cfg.output_dir}/best and {cfg.output_dir}/final")
    return 0


def cli(argv: Optional[Sequence[str]] = None) -> int:
    # CheckpointError and the data errors are ValueError/FileNotFoundError: one line, exit 2
    return run_cli(main, argv, prog=PROG)
