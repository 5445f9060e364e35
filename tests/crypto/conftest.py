"""Shared fixtures for the crypto tests: small updates so that CKKS rounds stay fast."""

from __future__ import annotations

import pytest
from crypto_testutils import SMALL_SIZE

from ppr.crypto import AggregationSpec, DeviceEncryptor, KeyHolder, default_params


@pytest.fixture(scope="module")
def spec() -> AggregationSpec:
    return AggregationSpec(SMALL_SIZE, 1.0, default_params())


@pytest.fixture(scope="module")
def key_holder(spec: AggregationSpec) -> KeyHolder:
    return KeyHolder(spec)


@pytest.fixture(scope="module")
def device(spec: AggregationSpec, key_holder: KeyHolder) -> DeviceEncryptor:
    return DeviceEncryptor(key_holder.public_context(), spec)
