"""Shared test fixtures and tiers.

Data under ../shared is optional locally and required in CI (CI=true).  Tiers (markers, see setup.cfg):
``slow`` (seconds or more each: end-to-end jobs, fresh interpreters, benchmarks), ``java`` (starts Pyserini's JVM),
``e2e`` (the main job on ../shared data).  The fast loop is ``pytest -m "not slow" tests``.
"""
import os
from pathlib import Path

import pytest
import torch

import pyserini_hypencoder  # noqa: F401  (sets up Java before any test imports Pyserini)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PYSERINI_HYPENCODER_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
THREADS = min(2, torch.get_num_threads())


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is absent (the ../shared data and fixtures live beside the checkout)"
        if IN_CI:
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session", autouse=True)
def session_threads():
    """One torch thread count for the whole session, set once here (not by each module)."""
    torch.set_num_threads(THREADS)
    return THREADS


@pytest.fixture(autouse=True)
def _same_threads_after(session_threads):
    """A test that sets torch's thread count (a CLI's --threads) does not leak it into the next one."""
    yield
    if torch.get_num_threads() != session_threads:
        torch.set_num_threads(session_threads)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _require(SHARED)


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return _require(SHARED / "fixtures" / "reference-parity")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return _require(SHARED / "data")


@pytest.fixture(scope="session")
def scifact_dir(data_dir) -> Path:
    return _require(data_dir / "scifact")


@pytest.fixture(scope="session")
def dl19_dir(data_dir) -> Path:
    return _require(data_dir / "trec-dl-2019-passage-rerank")


@pytest.fixture(scope="session")
def parity_model(parity_dir):
    """The parity checkpoint (published .bin layout), loaded once; tests must not change its weights."""
    from pyserini_hypencoder.model import load_hypencoder
    return load_hypencoder(str(parity_dir / "checkpoint_bin"))


@pytest.fixture(scope="session")
def feature_cache(tmp_path_factory) -> Path:
    """One frozen-backbone feature cache for every training test of the session."""
    return tmp_path_factory.mktemp("feature-cache")
