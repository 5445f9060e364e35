import math

import pytest

from ppr.crypto import (
    CkksParams,
    ckks_error_bound,
    default_params,
    flooding_std,
    fresh_noise_sigma,
    precision_bound,
)
from ppr.crypto.params import FLOODING_SIGMAS, MAX_COEFF_BITS_128
from ppr.errors import ConfigError


def test_default_params_are_secure_and_meet_the_precision_target():
    p = default_params()
    assert p.poly_modulus_degree == 4096
    assert p.slots == 2048
    assert sum(p.coeff_mod_bit_sizes) <= MAX_COEFF_BITS_128[4096]
    assert p.data_bits == 89 and p.n_data_primes == 2
    assert p.capacity == 2**14  # 89 - 2 primes - 1 - 72 bits of headroom
    assert p.capacity > 10_000
    # the released error (CKKS error + ten flooding stds) stays within the 1e-6 * C target
    assert precision_bound(p, 10_000) < 1e-6
    assert precision_bound(p, 200) < precision_bound(p, 10_000)
    # the flooding costs little against clipped values: < 1e-8 * C at 1,000 devices
    assert flooding_std(p, 1000) < 1e-8


def test_flooding_follows_the_stated_rule():
    """sigma = sqrt(12 tau) 2^(s/2) t (Li, Micciancio, Schultz, Sorrell 2022; params.py)."""
    p = default_params()
    assert (p.statistical_security, p.max_decryptions) == (30, 2**20)
    for n in (0, 3, 1000):
        t = ckks_error_bound(p, n)
        assert flooding_std(p, n) == pytest.approx(math.sqrt(12 * 2**20) * 2**15 * t)
        assert precision_bound(p, n) >= t + FLOODING_SIGMAS * flooding_std(p, n)
    # more decryptions or more security cost more noise, as the rule says
    more = CkksParams(4096, (60, 29, 20), 72, statistical_security=40, max_decryptions=2**22)
    assert flooding_std(more, 10) == pytest.approx(2**5 * 2 * flooding_std(p, 10))


def test_default_params_8192():
    p = default_params(8192)
    assert p.slots == 4096
    assert sum(p.coeff_mod_bit_sizes) <= MAX_COEFF_BITS_128[8192]
    assert p.capacity == 2**23
    assert fresh_noise_sigma(p) == pytest.approx(2 * fresh_noise_sigma(default_params()) / 4)
    assert precision_bound(p, 10_000) < 1e-6


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(poly_modulus_degree=2048, coeff_mod_bit_sizes=(27, 27), global_scale_bits=20),
            "poly_modulus_degree",
        ),
        (dict(coeff_mod_bit_sizes=(60, 50), global_scale_bits=40), "128-bit security"),
        (dict(coeff_mod_bit_sizes=(56,), global_scale_bits=40), "special prime"),
        (dict(coeff_mod_bit_sizes=(61, 40), global_scale_bits=40), "20..60"),
        (dict(coeff_mod_bit_sizes=(56, 53), global_scale_bits=54), "global_scale_bits"),
        (dict(global_scale_bits=87), "global_scale_bits"),
        (dict(poly_modulus_degree=3000), "poly_modulus_degree"),
        (dict(statistical_security=10), "statistical_security"),
        (dict(max_decryptions=0), "max_decryptions"),
    ],
)
def test_invalid_params_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        CkksParams(**kwargs)


def test_default_params_rejects_other_degrees():
    with pytest.raises(ConfigError, match="4096 or 8192"):
        default_params(2048)


def test_n_chunks_pads_the_last_chunk():
    p = default_params()
    assert p.n_chunks(1682 * 32) == math.ceil(53824 / 2048) == 27
    assert p.n_chunks(2048) == 1
    assert p.n_chunks(2049) == 2


@pytest.mark.parametrize("fn", [precision_bound, ckks_error_bound, flooding_std])
def test_bounds_reject_negative_cohort(fn):
    with pytest.raises(ConfigError):
        fn(default_params(), -1)
