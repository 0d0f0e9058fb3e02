"""Shared test fixtures.  Data under ../shared is optional locally and required in CI (CI=true)."""
import os
from pathlib import Path

import pytest

import pyserini_hypencoder  # noqa: F401  (sets up Java before any test imports Pyserini)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("PYSERINI_HYPENCODER_SHARED", REPO.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _require(path: Path) -> Path:
    if not path.exists():
        message = f"{path} is absent (the ../shared data and fixtures live beside the checkout)"
        if IN_CI:
            pytest.fail(message + "; CI requires it")
        pytest.skip(message)
    return path


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
