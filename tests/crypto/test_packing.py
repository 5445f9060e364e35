import numpy as np
import pytest

from ppr.crypto import UpdateRejected, decode_frame, encode_frame, pack, unpack


def test_pack_unpack_roundtrip_and_zero_padding():
    x = np.random.default_rng(0).normal(size=5000)
    chunks = pack(x, 2048)
    assert chunks.shape == (3, 2048)
    assert np.all(chunks.reshape(-1)[5000:] == 0.0)
    np.testing.assert_array_equal(unpack(list(chunks), 5000), x)


def test_unpack_refuses_too_few_values():
    with pytest.raises(ValueError, match="fewer"):
        unpack([np.zeros(10)], 11)


def test_frame_roundtrip():
    chunks = [b"abc", b"", b"x" * 1000]
    assert decode_frame(encode_frame(chunks, 7)) == (7, chunks)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"PPRC",
        b"XXXX" + encode_frame([b"ab"], 0)[4:],
        encode_frame([b"abc", b"de"], 0)[:-1],
        encode_frame([b"abc"], 0) + b"extra",
        encode_frame([b"abc"], 0)[:17] + (10**6).to_bytes(4, "little") + b"abc",
        encode_frame([], 0)[:13] + (2**31).to_bytes(4, "little"),
        "not bytes",
    ],
)
def test_decode_frame_rejects_defects(payload):
    with pytest.raises(UpdateRejected):
        decode_frame(payload)
