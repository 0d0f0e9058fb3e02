"""The argument vocabulary shared by every CLI (Pyserini's flag names) and one-line error handling."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Callable, Dict, List, Optional, Sequence

# Exceptions that are the user's input problems: printed as one line, exit status 2, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError, KeyError)


def _int_at_least(minimum: int, word: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {word} integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a {word} integer, got {value}")
        return value
    return parse


positive_int = _int_at_least(1, "positive")
non_negative_int = _int_at_least(0, "non-negative")


def torch_device(text: str) -> str:
    """A torch device name that this machine has (``cpu``, ``cuda``, ``cuda:1``, ...)."""
    if text == "cpu":   # the default: argparse converts it on every parse, so torch is not imported for it
        return text
    import torch
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a torch device: {text!r} (e.g. cpu, cuda, cuda:0)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: this torch has no CUDA device (torch.cuda.is_available() is False)")
    return text


def add_common_args(parser) -> None:
    """``--threads N``, ``--verbose`` and ``--quiet``, which every CLI takes."""
    parser.add_argument("--threads", type=positive_int, default=None, metavar="N", help="torch CPU threads")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    parser.add_argument("--quiet", action="store_true", help="no progress bars (also none from transformers)")


def define_encoder_args(parser, *, default_encoder: Optional[str] = "default", batch_size: int = 64,
                        max_length: Optional[int] = None, device: str = "cpu") -> None:
    """``--encoder --batch-size --max-length --device --bf16 --num-attention-heads`` (and the common flags)."""
    parser.add_argument("--encoder", default=default_encoder, metavar="PATH_OR_ID",
                        help="Hypencoder checkpoint directory, Hub id, or 'default' (the embedded model)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, metavar="N")
    parser.add_argument("--max-length", type=positive_int, default=max_length, metavar="TOKENS",
                        help="truncation length (default: the model's setting)")
    parser.add_argument("--device", type=torch_device, default=device, help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--bf16", action="store_true", help="bf16 matrix products (fp32 layer norms and scores)")
    parser.add_argument("--fp16", dest="bf16", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--num-attention-heads", type=positive_int, default=None, metavar="N",
                        help="backbone head count when it cannot be inferred (default hidden/64)")
    add_common_args(parser)


def add_ray_group(parser, what: str):
    """The ``--ray [ADDRESS]`` group both the encode and the search CLI have; ``what`` says what Ray does there."""
    group = parser.add_argument_group('Ray (the ray extra: pip install "pyserini-hypencoder[ray]"); docs/scale.md')
    group.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                       help=f"{what}; ADDRESS as ray.init takes it (auto, HOST:PORT, ray://HOST:10001); without one, "
                            "a local Ray instance")
    return group


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    """Log lines on stderr; ``quiet`` turns progress bars off for what is imported from now on and for child
    processes (tqdm's and transformers'); bars created by modules already imported take a flag."""
    if quiet:
        os.environ["TQDM_DISABLE"] = "1"
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        import functools

        import tqdm   # tqdm reads TQDM_DISABLE when imported: bars of modules imported earlier go off here
        if not getattr(tqdm.tqdm, "_quiet", False):
            tqdm.tqdm.__init__ = functools.partialmethod(tqdm.tqdm.__init__, disable=True)
            tqdm.tqdm._quiet = True
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:   # faiss logs each SIMD build it tries and cannot load, which reads like a failure
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def set_threads(threads: Optional[int]) -> None:
    if threads:
        import torch
        torch.set_num_threads(threads)


def run_cli(main: Callable[[Optional[Sequence[str]]], int], argv: Optional[Sequence[str]] = None,
            prog: str = "pyserini_hypencoder") -> int:
    """Run ``main``; a user error becomes ``prog: error: message`` on stderr and exit status 2."""
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2


def parse_groups(parsers: Dict[str, argparse.ArgumentParser], argv: Sequence[str], prog: str, *,
                 required: Sequence[str], usage: str) -> Dict[str, argparse.Namespace]:
    """Pyserini's grouped arguments (``input ... output ... encoder ...``; ``dense ... sparse ... run ...``): argv
    split at the group words, each group parsed by its parser; a group's ``--help`` prints its own help."""
    groups: Dict[str, List[str]] = {}
    current = None
    for token in argv:
        if token in parsers:
            if token in groups:
                raise ValueError(f"the '{token}' group is given twice")
            current = groups[token] = []
        elif current is None:
            if token in ("-h", "--help"):
                print(f"usage: {prog} " + " ".join(f"{name} [{name} options]" for name in parsers) +
                      f"\n(each group has its own --help, e.g. {prog} {next(iter(parsers))} --help)")
                raise SystemExit(0)
            raise ValueError(f"expected a group word ({', '.join(parsers)}) before {token!r}; {usage}")
        else:
            current.append(token)
    for name, tokens in groups.items():
        if "-h" in tokens or "--help" in tokens:
            parsers[name].parse_args(["--help"])   # prints the group's help and exits 0
    missing = [name for name in required if name not in groups]
    if missing:
        raise ValueError(f"the '{missing[0]}' group is missing; {usage}")
    return {name: parser.parse_args(groups.get(name, [])) for name, parser in parsers.items()}


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``prog: error: message`` on stderr, exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

