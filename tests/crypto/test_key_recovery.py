"""The Li-Micciancio key-recovery attack, run against real TenSEAL ciphertexts and keys.

The attacker holds what the aggregator holds (the public context, every device's upload and the
round's aggregate ciphertexts) plus the key holder's release of that aggregate (which reaches the
server, and through the model every device). With an *exact* release it solves for the secret
key (``ckks_attack``: a 2x2 linear system per pair of conjugate NTT points, from the two
ciphertexts of one aggregate), checked against the real key read from the key holder's context,
and then decrypts one device's individual upload. Against the key holder's real, flooded release
the same attack recovers nothing: the solution is not the key (not even ternary) and decrypting
the upload with it gives garbage.

Exact releases, per parameter set:

* previous parameters (N = 4096, (56, 53), scale 2^40): the float64 vector TenSEAL's
  ``decrypt()`` returns, i.e. what ``KeyHolder.decrypt_aggregate`` released before flooding
  (times ``value_bound`` = 1): at a 2^40 scale float64 carries the decryption exactly;
* current defaults (scale 2^72): float64 can no longer carry every bit, so the exact decryption
  is SEAL's plaintext polynomial itself (the decryptor's output inside the key holder), reduced
  to its real-slot (symmetric) part: the information an exact real-slot release carries.
"""

from __future__ import annotations

import numpy as np
import pytest
import tenseal as ts
from ckks_attack import (
    centred,
    ciphertext_words,
    conj_index,
    decrypt_with,
    exact_plaintext_words,
    from_seal_ntt,
    intt,
    ntt,
    recover_secret_ntt,
    seal_primes,
    secret_key_words,
    symmetric_from_slots,
)

from ppr.crypto import (
    AggregationSpec,
    Aggregator,
    CkksParams,
    DeviceEncryptor,
    KeyHolder,
    decode_frame,
    default_params,
)

PARAMS = {"previous_2^40": CkksParams(4096, (56, 53), 40), "default_2^72": default_params()}
N_DEVICES = 3


class Round:
    """One real round: devices encrypt, the aggregator sums, the key holder (OS flooding, as in
    production) releases; plus what the test needs to judge the attack."""

    def __init__(self, params: CkksParams) -> None:
        self.params = params
        self.spec = AggregationSpec(2 * params.slots, 1.0, params)  # two full ciphertexts
        self.key_holder = KeyHolder(self.spec)
        public = self.key_holder.public_context()
        self.public_ctx = ts.context_from(public)
        rng = np.random.default_rng(7)
        self.updates = rng.uniform(-0.3, 0.3, (N_DEVICES, self.spec.n_values))
        device = DeviceEncryptor(public, self.spec)
        aggregator = Aggregator(public, self.spec)
        aggregator.start_round(0)
        self.uploads = [device.encrypt(u, 0) for u in self.updates]
        for i, frame in enumerate(self.uploads):
            assert aggregator.receive(i, frame) is None
        self.aggregate = aggregator.finish()
        self.primes = seal_primes(params.poly_modulus_degree, params.coeff_mod_bit_sizes)
        self.q = self.primes[0]
        bits = params.coeff_mod_bit_sizes
        _, chunks = decode_frame(self.aggregate)
        self.chunks = chunks
        words = [ciphertext_words(ts.ckks_vector_from(self.public_ctx, c), bits) for c in chunks]
        self.scale = words[0][1]
        self.c0 = [from_seal_ntt(w[0, 0], self.q) for w, _ in words]
        self.c1 = [from_seal_ntt(w[1, 0], self.q) for w, _ in words]
        victim = ts.ckks_vector_from(self.public_ctx, decode_frame(self.uploads[0])[1][0])
        self.victim_words, self.victim_scale = ciphertext_words(victim, bits)
        self.victim_values = self.updates[0, : params.slots]

    def real_secret_ntt(self) -> np.ndarray:
        """The real key (test side only: the judge, never an input of the attack)."""
        n, k = self.params.poly_modulus_degree, self.params.n_data_primes
        return from_seal_ntt(secret_key_words(self.key_holder._ctx, n, k)[0], self.q)

    def attack(self, symmetric: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, float]:
        """Run the attack on the two chunks' symmetric decryptions (evaluations mod q):
        recovered key (NTT and centred coefficients) and its error on the victim's upload."""
        s_hat = recover_secret_ntt(self.c0, self.c1, symmetric, self.q)
        s = centred(intt(s_hat, self.q), self.q)
        got = decrypt_with(self.victim_words, s, self.primes, self.victim_scale)
        return s_hat, s, float(np.max(np.abs(got - self.victim_values)))

    def exact_symmetric(self) -> list[np.ndarray]:
        """The exact release, reduced to what real slots carry (module docstring)."""
        if self.params.global_scale_bits <= 40:  # float64 holds it: the old release as is
            ctx = self.key_holder._ctx
            slots = [np.asarray(ts.ckks_vector_from(ctx, c).decrypt()) for c in self.chunks]
            return [ntt(symmetric_from_slots(z, self.scale), self.q) for z in slots]
        jc = conj_index(self.params.poly_modulus_degree)
        out = []
        for c in self.chunks:
            plain = exact_plaintext_words(
                self.key_holder._ctx, ts.ckks_vector_from(self.key_holder._ctx, c)
            )
            m = from_seal_ntt(plain[0], self.q)
            out.append((m + m[jc]) % self.q)
        return out


@pytest.fixture(scope="module", params=list(PARAMS))
def rnd(request) -> Round:
    return Round(PARAMS[request.param])


def test_the_attackers_conventions_match_seal(rnd: Round):
    """Primes and NTT order as the attacker computes them: the real key comes out ternary."""
    s = centred(intt(rnd.real_secret_ntt(), rnd.q), rnd.q)
    assert set(s.tolist()) <= {-1, 0, 1} and sum(v != 0 for v in s) > rnd.params.slots // 2
    ctx_data = rnd.key_holder._ctx.seal_context().data.first_context_data()
    q_data = int(np.prod(np.array(rnd.primes[:-1], dtype=object)))
    assert ctx_data.total_coeff_modulus() == q_data % 2**64  # low word of SEAL's own product


def test_an_exact_release_gives_away_the_secret_key(rnd: Round):
    s_hat, s, victim_err = rnd.attack(rnd.exact_symmetric())
    assert np.array_equal(s_hat, rnd.real_secret_ntt())  # the real secret key, every point
    assert set(s.tolist()) <= {-1, 0, 1}
    # ... with which one device's individual upload decrypts to CKKS precision
    assert victim_err < 1e-7


def test_the_key_holders_flooded_release_does_not(rnd: Round):
    released = rnd.key_holder.decrypt_aggregate(rnd.aggregate, 0, N_DEVICES)
    assert released.flooding.source == "os" and released.flooding.std > 0
    assert np.max(np.abs(released.total - rnd.updates.sum(0))) <= released.flooding.error_bound
    slots = rnd.params.slots
    z = [released.total[:slots], released.total[slots:]]
    s_hat, s, victim_err = rnd.attack([ntt(symmetric_from_slots(v, rnd.scale), rnd.q) for v in z])
    real = rnd.real_secret_ntt()
    assert np.count_nonzero(s_hat == real) < 8  # not the key: agrees at chance level only
    assert np.mean([abs(int(v)) <= 1 for v in s]) < 0.01  # not even a ternary key
    assert victim_err > 1e3  # the upload's values are within 0.3; this is noise
