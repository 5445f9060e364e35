"""What one malicious device can and cannot do to a CKKS round (the documented behaviour).

One device of a real cohort (tiny synthetic fleet, real DeviceEncryptor for the honest devices,
real CkksSecureAggregation and FederatedTrainer) sends a bad payload:

* garbage bytes or a wrong chunk count: the aggregator rejects that device, the round goes on;
* ciphertexts under another key, or a correctly encrypted update far beyond the value bound: the
  key holder refuses the whole aggregate (``AggregateRejectedError``); the trainer skips the round
  (nothing released, the model does not move) and goes on: one device can waste rounds (a denial
  of service for as long as it is sampled), not stop the run;
* a well-formed ciphertext of garbage (a byte of its own ciphertext flipped, under a valid frame
  digest): accepted by the aggregator, refused by the key holder; measured over a run with
  Poisson sampling, the device costs exactly the rounds it is sampled into (a fraction q of the
  run) and no other;
* with the clip norm known, the key holder also refuses a sum whose L2 norm exceeds n C + ||noise||;
* a correctly encrypted update beyond the value bound but whose coordinates stay below what the
  aggregate check allows (``n_accepted`` value bounds), or one with every coordinate within the
  bound (L2 norm ``sqrt(n_values)`` value bounds instead of C): accepted and summed as is, since
  the checks see only the aggregate (see benchmarks/malicious.py for the damage).
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import optax
import pytest
import tenseal as ts
from data_testutils import random_user_items

from ppr.crypto import (
    CkksSecureAggregation,
    DeviceEncryptor,
    KeyHolder,
    ProtocolError,
    decode_frame,
    encode_frame,
    pack,
    precision_bound,
)
from ppr.federated import (
    DeviceFleet,
    EncodedSum,
    FederatedTrainer,
    RoundSum,
    Server,
)
from ppr.model.mf import MFHyper, init_item_factors

N_USERS, N_ITEMS, DIM, CLIP = 12, 50, 4, 0.5  # 200 values: one ciphertext
BAD = 5  # the malicious device
ROUNDS = itertools.count()


class OneBadDevice(EncodedSum):
    """Honest devices encrypt their real updates; device ``BAD``, when it takes part, sends
    ``attack(round, own)`` instead of its own framed update ``own``."""

    def __init__(self, secure: CkksSecureAggregation, attack) -> None:
        super().__init__(secure, N_ITEMS, DIM)
        self.attack = attack
        self.encryptor = DeviceEncryptor(secure.public_context, secure.spec)
        self.honest_sum: np.ndarray | None = None
        self.bad_rounds: list[int] = []  # rounds the bad device took part in

    def aggregate(self, round_idx, devices, key, *, noise=None, noise_share_std=0.0):
        rows, ids = self._rows(devices, key, noise_share_std)
        msgs = {
            int(d): self.encryptor.encrypt(r, round_idx) for d, r in zip(ids, rows, strict=True)
        }
        if BAD in msgs:
            msgs[BAD] = self.attack(round_idx, msgs[BAD])
            self.bad_rounds.append(round_idx)
        self.honest_sum = rows[ids != BAD].astype(np.float64).sum(axis=0)
        res = self.secure.aggregate_messages(msgs, round_idx)
        return RoundSum(
            res.total.reshape(N_ITEMS, DIM), res.n_accepted, res.upload_bytes, res.rejected
        )


@pytest.fixture(scope="module")
def secure():
    with CkksSecureAggregation(N_ITEMS * DIM, workers=1, value_bound=CLIP) as agg:
        yield agg


@pytest.fixture(scope="module")
def fleet() -> DeviceFleet:
    rng = np.random.default_rng(0)
    lens = rng.integers(2, 10, N_USERS)
    items = random_user_items(rng, lens, N_ITEMS)
    return DeviceFleet(items, np.ones(N_USERS, bool), MFHyper(3.0, 2.0))


def _trainer(
    fleet: DeviceFleet, agg: OneBadDevice, rate: float = 1.0
) -> tuple[FederatedTrainer, object]:
    server = Server(optax.adam(0.05))
    trainer = FederatedTrainer(
        fleet,
        agg,
        server,
        sampling="poisson",
        sampling_rate=rate,
        participants=N_USERS,
        dropout_rate=0.0,
        clip_norm=CLIP,
        fixed_denominator=None,
    )
    q0 = init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 0.1)
    return trainer, server.init(q0)


def _encrypted(public_context: bytes, x: np.ndarray, round_idx: int, value_bound: float) -> bytes:
    """What a malicious device can always do: encrypt any vector with the public key."""
    ctx = ts.context_from(public_context)
    cts = [ts.ckks_vector(ctx, row.tolist()).serialize() for row in pack(x / value_bound, 2048)]
    return encode_frame(cts, round_idx)


def test_malformed_payloads_cost_only_the_sender(secure, fleet):
    attacks = {
        "garbage": lambda r, own: np.random.default_rng(1).bytes(4000),
        "wrong_chunk_count": lambda r, own: encode_frame(decode_frame(own)[1] * 2, r),
    }
    for name, attack in attacks.items():
        trainer, state = _trainer(fleet, OneBadDevice(secure, attack))
        new_state, log = trainer.round(state, next(ROUNDS), jax.random.PRNGKey(0))
        assert (log.accepted, log.rejected) == (N_USERS - 1, 1), name
        assert not np.array_equal(np.asarray(new_state.q), np.asarray(state.q))


@pytest.mark.parametrize("case", ["other_key", "far_beyond_bound"])
def test_a_refused_aggregate_skips_the_round_and_training_goes_on(secure, fleet, case):
    other = KeyHolder(secure.spec)  # same parameters, another secret key

    def attack(r, own):
        if case == "other_key":
            return _encrypted(other.public_context(), np.full(N_ITEMS * DIM, 0.1), r, CLIP)
        x = np.zeros(N_ITEMS * DIM)
        x[0] = 1e3 * N_USERS * CLIP  # far beyond what the cohort can reach
        return _encrypted(secure.public_context, x, r, CLIP)

    trainer, state = _trainer(fleet, OneBadDevice(secure, attack))
    t = next(ROUNDS)
    next(ROUNDS)
    new_state, logs = trainer.fit(state, t + 2, jax.random.PRNGKey(0), start=t)
    # nothing was released, the model did not move, and the run went on to the next round
    assert [lg.aggregate_rejected for lg in logs] == [True, True]
    assert np.array_equal(np.asarray(new_state.q), np.asarray(state.q))
    # the round index is spent: it cannot be retried to learn more
    with pytest.raises(ProtocolError, match="already aggregated"):
        secure.aggregate_messages({}, t)


def _garbage(public_context: bytes, own: bytes, r: int) -> bytes:
    """The device's own ciphertext with one byte flipped, framed with a valid digest: a
    well-formed ciphertext of garbage (a flip that parses: most do)."""
    ctx = ts.context_from(public_context)
    (chunk,) = decode_frame(own)[1]
    for offset in range(200, 20_000, 997):
        bad = bytearray(chunk)
        bad[len(bad) - offset] ^= 0x10
        try:
            ts.ckks_vector_from(ctx, bytes(bad))
        except Exception:
            continue
        return encode_frame([bytes(bad)], r)
    raise AssertionError("no flipped ciphertext parsed")


def test_a_garbage_ciphertext_costs_exactly_the_rounds_its_device_is_sampled_into(secure, fleet):
    """The measured cost of the undetectable case: with Poisson sampling at q = 0.5 over 8
    rounds, the rounds refused are exactly those the bad device took part in, every other round
    is released, and the run goes on (q = 1 would refuse every round: no training at all)."""
    agg = OneBadDevice(secure, lambda r, own: _garbage(secure.public_context, own, r))
    trainer, state = _trainer(fleet, agg, rate=0.5)
    start = next(ROUNDS)
    for _ in range(7):
        next(ROUNDS)
    _, logs = trainer.fit(state, start + 8, jax.random.PRNGKey(3), start=start)
    refused = [lg.round - 1 for lg in logs if lg.aggregate_rejected]  # logs count from 1
    assert refused == agg.bad_rounds
    assert 0 < len(refused) < len(logs)  # this key samples the device in some rounds only
    released = [lg for lg in logs if not lg.aggregate_rejected]
    assert all(lg.released and lg.rejected == 0 for lg in released if lg.accepted)


def test_l2_check_refuses_an_in_bound_update_with_a_huge_norm(fleet):
    """With the devices' clip norm known (as ppr.pipeline passes it), the key holder also bounds
    the sum's L2 norm by n C + ||noise||: an update with every coordinate within the bound but norm
    sqrt(200) C > 12 C is refused; the same attack is accepted without the L2 check (below)."""
    signs = np.random.default_rng(2).choice([-1.0, 1.0], N_ITEMS * DIM)
    with CkksSecureAggregation(N_ITEMS * DIM, workers=1, value_bound=CLIP, l2_clip=CLIP) as sec:
        enc = DeviceEncryptor(sec.public_context, sec.spec)
        trainer, state = _trainer(
            fleet, OneBadDevice(sec, lambda r, own: enc.encrypt(signs * CLIP, r))
        )
        _, log = trainer.round(state, 0, jax.random.PRNGKey(0))
        assert log.aggregate_rejected
        honest, state = _trainer(fleet, OneBadDevice(sec, lambda r, own: own))
        _, log = honest.round(state, 1, jax.random.PRNGKey(0))
        assert not log.aggregate_rejected and log.accepted == N_USERS


def test_beyond_bound_under_the_aggregate_check_is_accepted(secure, fleet):
    factor = N_USERS / 2  # value bounds on one coordinate: the key holder allows N_USERS

    def attack(r, own):
        x = np.zeros(N_ITEMS * DIM)
        x[0] = factor * CLIP
        return _encrypted(secure.public_context, x, r, CLIP)

    agg = OneBadDevice(secure, attack)
    rnd = fleet.compute(
        init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 0.1), fleet.population, CLIP
    )
    out = agg.aggregate(next(ROUNDS), rnd, jax.random.PRNGKey(0))
    assert (out.n_accepted, len(out.rejected)) == (N_USERS, 0)
    expected = agg.honest_sum.copy()
    expected[0] += factor * CLIP
    tol = precision_bound(secure.spec.params, N_USERS) * CLIP
    np.testing.assert_allclose(out.total.reshape(-1), expected, rtol=0, atol=tol)


def test_in_bound_update_with_huge_norm_is_accepted(secure, fleet):
    signs = np.random.default_rng(2).choice([-1.0, 1.0], N_ITEMS * DIM)
    bad = signs * CLIP  # every coordinate within the bound; L2 norm sqrt(200) * C

    agg = OneBadDevice(secure, lambda r, own: agg.encryptor.encrypt(bad, r))
    rnd = fleet.compute(
        init_item_factors(jax.random.PRNGKey(0), N_ITEMS, DIM, 0.1), fleet.population, CLIP
    )
    out = agg.aggregate(next(ROUNDS), rnd, jax.random.PRNGKey(0))
    assert (out.n_accepted, len(out.rejected)) == (N_USERS, 0)
    assert np.linalg.norm(bad) > 14 * CLIP
    tol = precision_bound(secure.spec.params, N_USERS) * CLIP
    np.testing.assert_allclose(out.total.reshape(-1), agg.honest_sum + bad, rtol=0, atol=tol)
