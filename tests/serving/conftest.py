"""Shared fixtures of the serving tests: a small structured catalog and its users."""

from __future__ import annotations

import numpy as np
import pytest

from ppr.serving.catalog import Catalog, clustered_catalog, sample_user_items


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return clustered_catalog(np.random.default_rng(7), 3000, dim=16, n_clusters=64)


@pytest.fixture(scope="session")
def users(catalog: Catalog) -> list[np.ndarray]:
    return sample_user_items(np.random.default_rng(8), catalog, 60, items_per_user=(5, 40))
