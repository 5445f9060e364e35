"""Shared fixtures for the data tests: where the real MovieLens files are (never in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """``$PPR_DATA_DIR`` (default ``../shared/datasets``); a relative path is from the repo root."""
    d = Path(os.environ.get("PPR_DATA_DIR", "../shared/datasets"))
    return d if d.is_absolute() else ROOT / d


def _need(sub: str) -> Path:
    p = data_dir() / sub
    if not p.exists():
        pytest.skip(
            f"real MovieLens data not found at {p}: set PPR_DATA_DIR to a folder holding "
            "ml-100k/ and ml-1m/ (download from https://grouplens.org/datasets/movielens/)"
        )
    return p


@pytest.fixture
def ml100k_dir() -> Path:
    return _need("ml-100k")


@pytest.fixture
def ml1m_dir() -> Path:
    return _need("ml-1m")
