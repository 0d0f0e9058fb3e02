"""A training run's resumable state (``output_dir/checkpoint/trainer_state.pt``): what it holds, when a resume may
use it, and what a run writes into ``output_dir``."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .._fsutil import atomic_file

STATE_FILE = "trainer_state.pt"
# Settings that do not change a run's results, so --resume accepts new values for them.
RESUME_MAY_CHANGE = {"threads", "cache_dir", "output_dir", "eval_batch_size"}
# What a run writes into output_dir (and what --overwrite removes).
RUN_OUTPUTS = ("checkpoint", "best", "final", "history.jsonl", "summary.json", "train_config.json")


def remove_run_outputs(out: Path) -> None:
    """--overwrite: remove what a run writes into ``out``, and nothing else that lives there."""
    for name in RUN_OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def read_state(path: Path, config: dict) -> dict:
    """The saved state, if its settings are ``config``'s (but for RESUME_MAY_CHANGE); a one-line error otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume (run without --resume to start)")
    state = torch.load(str(path), map_location="cpu", weights_only=False)
    saved = state["config"]
    changed = sorted(k for k in config if k not in RESUME_MAY_CHANGE and saved.get(k) != config[k])
    if changed:
        raise ValueError(f"--resume: settings differ from the saved run's ({', '.join(changed)}); "
                         f"use the same settings, or --overwrite to start again")
    return state


def write_state(path: Path, state: dict) -> None:
    with atomic_file(path, "wb") as f:
        torch.save(state, f)
