import pytest

from ppr.crypto import Channel


def test_channel_counts_by_role_kind_and_round():
    ch = Channel()
    assert ch.send("key_holder", "device/1", "public_context", b"c" * 10, 0) == b"c" * 10
    ch.send("device/1", "aggregator", "update", b"u" * 100, 0)
    ch.send("device/2", "aggregator", "update", b"u" * 50, 0)
    ch.send("device/1", "aggregator", "update", b"u" * 30, 1)
    ch.send("aggregator", "key_holder", "aggregate", b"a" * 7, 1)
    t = ch.totals()
    assert t["total_bytes"] == 197
    assert t["messages"] == 5
    assert t["by_sender"] == {"key_holder": 10, "device": 180, "aggregator": 7}
    assert t["by_receiver"] == {"device": 10, "aggregator": 180, "key_holder": 7}
    assert t["by_kind"] == {"public_context": 10, "update": 180, "aggregate": 7}
    assert t["by_round"] == {
        0: {"public_context": 10, "update": 150},
        1: {"update": 30, "aggregate": 7},
    }
    assert sum(t["by_sender"].values()) == sum(t["by_kind"].values()) == t["total_bytes"]
    assert ch.bytes_per_device_upload(0) == 75.0
    assert ch.bytes_per_device_upload(1) == 30.0
    assert ch.bytes_per_device_upload() == 60.0
    assert ch.bytes_per_device_upload(5) == 0.0


def test_channel_refuses_non_bytes():
    with pytest.raises(TypeError, match="bytes"):
        Channel().send("a", "b", "update", [1, 2], 0)
