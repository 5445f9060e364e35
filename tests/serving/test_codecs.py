"""Each storage format round-trips within its stated bound; the score bound holds."""

from __future__ import annotations

import numpy as np
import pytest

from ppr.serving.codecs import (
    FORMATS,
    bytes_per_row,
    encode,
    entry_error_bound,
    load_encoded,
    save_encoded,
    score_error_bound,
)
from ppr.serving.errors import CodecError


def _matrix(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=(500, 16)) * rng.pareto(2.0, size=(500, 1))
    q[3] = 0.0  # an all-zero row (int8 scale 0)
    q[4, :8] = 1e-9  # float16 subnormal territory
    return q.astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_within_bound(fmt: str) -> None:
    q = _matrix(np.random.default_rng(0))
    enc = encode(q, fmt)
    err = np.abs(enc.decode(dtype=np.float64) - q.astype(np.float64))
    assert np.all(err <= entry_error_bound(enc))
    assert enc.nbytes == q.shape[0] * bytes_per_row(fmt, q.shape[1])
    if fmt == "float32":
        assert np.array_equal(enc.decode(), q)
    if fmt == "int8":
        assert enc.scale is not None
        np.testing.assert_allclose(enc.scale, np.abs(q).max(axis=1) / 127, rtol=1e-6)
        assert np.all(err <= enc.scale[:, None] * (0.5 + 1e-5))  # |q_hat - q| <= scale / 2


@pytest.mark.parametrize("fmt", FORMATS)
def test_score_error_bound_holds(fmt: str) -> None:
    rng = np.random.default_rng(1)
    q = _matrix(rng)
    p = rng.normal(size=16).astype(np.float32)
    q_enc, p_enc = encode(q, fmt), encode(p, fmt)
    p_hat = p_enc.decode(dtype=np.float64)[0]
    exact = q.astype(np.float64) @ p.astype(np.float64)
    approx = q_enc.decode(dtype=np.float64) @ p_hat
    bound = score_error_bound(p_hat, entry_error_bound(p_enc)[0], q_enc)
    assert np.all(np.abs(approx - exact) <= bound + 1e-12)
    if fmt != "float32":
        assert np.max(bound) > 0


def test_refusals_and_save_load(tmp_path) -> None:
    with pytest.raises(CodecError, match="unknown embedding format"):
        encode(np.zeros((2, 2)), "int4")
    with pytest.raises(CodecError, match="float16's range"):
        encode(np.full((1, 2), 1e5), "float16")
    with pytest.raises(CodecError, match="non-finite"):
        encode(np.array([[np.nan, 0.0]]), "int8")
    enc = encode(_matrix(np.random.default_rng(2)), "int8")
    save_encoded(enc, tmp_path)
    back = load_encoded(tmp_path, "int8", mmap=True)
    assert isinstance(back.codes, np.memmap)
    assert np.array_equal(back.decode(), enc.decode())
