"""Where the real MovieLens files are (never in the repo): ``$PPR_DATA_DIR``, default
``../shared/datasets`` relative to the repo root.

Real-data tests FAIL when the files are missing, they do not skip: CI checks that the data is
present (``.ci/run``), so a missing data set must not turn into a silently green run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """``$PPR_DATA_DIR`` (default ``../shared/datasets``); a relative path is from the repo root."""
    d = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    return d if d.is_absolute() else ROOT / d


def _need(sub: str) -> Path:
    p = data_dir() / sub
    if not p.is_dir():
        pytest.fail(
            f"real MovieLens data not found at {p}: set PPR_DATA_DIR to a folder holding "
            "ml-100k/ and ml-1m/ (download from https://grouplens.org/datasets/movielens/)"
        )
    # configs read "$PPR_DATA_DIR/ml-100k": make the resolved (absolute) folder what they see
    os.environ["PPR_DATA_DIR"] = str(data_dir().resolve())
    return p


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    return _need("ml-100k")


@pytest.fixture(scope="session")
def ml1m_dir() -> Path:
    return _need("ml-1m")
