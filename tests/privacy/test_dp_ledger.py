"""Ledger: ε of the composition equals a fresh accountant; JSON round-trips; atomic save."""

import json
import math

import dp_accounting
import pytest
from dp_accounting.rdp import rdp_privacy_accountant

from ppr.errors import PprError
from ppr.privacy import (
    RDP_ORDERS,
    PrivacyLedger,
    dpfedavg_event,
    event_from_json,
    event_to_json,
    ledger_from_json,
    load_ledger,
    quiet_absl,
    realized_rounds_event,
)


def _ledger() -> PrivacyLedger:
    return (
        PrivacyLedger()
        .add("popularity", dp_accounting.GaussianDpEvent(20.0), "DP item counts")
        .add("dpfedavg", dpfedavg_event(1.2, 0.05, 80), "training")
        .add("realized", realized_rounds_event([1.0, 0.8, 1.0], 0.05), "dropouts")
    )


def test_ledger_epsilon_matches_fresh_accountant() -> None:
    ledger = _ledger()
    acc = rdp_privacy_accountant.RdpAccountant(list(RDP_ORDERS))
    with quiet_absl():
        for entry in ledger.entries:
            acc.compose(entry.event)
        expected = acc.get_epsilon(1e-5)
    assert ledger.epsilon(1e-5, "rdp") == pytest.approx(expected, abs=1e-6)
    assert ledger.epsilon(1e-5) == ledger.epsilon(1e-5, "pld") < ledger.epsilon(1e-5, "rdp")


@pytest.mark.parametrize("accountant", ["pld", "rdp"])
def test_empty_and_nonprivate_ledgers(tmp_path, accountant) -> None:
    assert PrivacyLedger().epsilon(1e-5, accountant) == 0.0  # nothing released
    assert PrivacyLedger().to_dict(1e-5, accountant)["summary"]["epsilon"] == 0.0
    leaky = _ledger().add("raw", dp_accounting.NonPrivateDpEvent(), "un-noised counts")
    assert math.isinf(leaky.epsilon(1e-5, accountant))
    zero_noise = PrivacyLedger().add("sum", dp_accounting.GaussianDpEvent(0.0))
    assert math.isinf(zero_noise.epsilon(1e-5, accountant))
    summary = json.loads(leaky.to_json(1e-5, accountant))["summary"]
    assert summary["epsilon"] == "inf" and summary["private"] is False
    path = leaky.save(tmp_path / "ledger.json", 1e-5, accountant)
    assert json.loads(path.read_text())["summary"]["epsilon"] == "inf"
    assert math.isinf(load_ledger(path).epsilon(1e-5, accountant))


def test_first_format_ledgers_still_load() -> None:
    old = (
        '{"format": "ppr.privacy.ledger/1", "entries": [{"name": "dpfedavg", "description": '
        '"training", "event": {"type": "SelfComposedDpEvent", "event": {"type": '
        '"GaussianDpEvent", "noise_multiplier": 5.2}, "count": 80}}], "summary": {"delta": '
        '0.0001, "accountant": "rdp", "epsilon": 8.006}}'
    )
    ledger = ledger_from_json(old)
    assert ledger.names() == ("dpfedavg",)
    assert ledger.epsilon(1e-4) == pytest.approx(7.347476, abs=1e-5)  # PLD by default


def test_ledger_is_immutable_and_names_unique() -> None:
    a = PrivacyLedger()
    b = a.add("x", dp_accounting.GaussianDpEvent(1.0))
    assert len(a) == 0 and b.names() == ("x",)
    with pytest.raises(PprError, match="already has an entry named `x`"):
        b.add("x", dp_accounting.GaussianDpEvent(2.0))
    with pytest.raises(PprError, match="must be a DpEvent"):
        a.add("y", 1.0)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    ledger = _ledger()
    text = ledger.to_json(delta=1e-5)
    data = json.loads(text)  # strict JSON
    assert data["summary"]["epsilon"] == pytest.approx(ledger.epsilon(1e-5))
    back = ledger_from_json(text)
    assert back == ledger
    assert back.epsilon(1e-5) == ledger.epsilon(1e-5)
    assert data["entries"][1]["event"] == {
        "type": "SelfComposedDpEvent",
        "event": {
            "type": "PoissonSampledDpEvent",
            "sampling_probability": 0.05,
            "event": {"type": "GaussianDpEvent", "noise_multiplier": 1.2},
        },
        "count": 80,
    }


def test_non_finite_floats_are_strict_json() -> None:
    ev = dp_accounting.GaussianDpEvent(float("inf"))
    encoded = event_to_json(ev)
    assert encoded == {"type": "GaussianDpEvent", "noise_multiplier": {"$float": "inf"}}
    assert event_from_json(json.loads(json.dumps(encoded, allow_nan=False))) == ev


def test_decoder_refuses_unknown_types() -> None:
    with pytest.raises(PprError, match="unknown DpEvent type"):
        event_from_json({"type": "os.system"})
    with pytest.raises(PprError, match="unknown field"):
        event_from_json({"type": "GaussianDpEvent", "noise_multiplier": 1.0, "x": 2})
    with pytest.raises(PprError, match="not a privacy ledger"):
        ledger_from_json("{}")


def test_save_is_atomic_and_loads_back(tmp_path) -> None:
    ledger = _ledger()
    path = ledger.save(tmp_path / "run" / "privacy.json", delta=1e-5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["privacy.json"]  # no temp left
    assert load_ledger(path) == ledger
    ledger.add("more", dp_accounting.GaussianDpEvent(3.0)).save(path)
    assert load_ledger(path).names()[-1] == "more"
    assert sorted(p.name for p in path.parent.iterdir()) == ["privacy.json"]
