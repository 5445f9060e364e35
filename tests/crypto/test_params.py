import math

import pytest

from ppr.crypto import CkksParams, default_params, fresh_noise_sigma, precision_bound
from ppr.crypto.params import MAX_COEFF_BITS_128
from ppr.errors import ConfigError


def test_default_params_are_secure_and_meet_the_precision_target():
    p = default_params()
    assert p.poly_modulus_degree == 4096
    assert p.slots == 2048
    assert sum(p.coeff_mod_bit_sizes) <= MAX_COEFF_BITS_128[4096]
    assert p.data_bits == 56
    assert p.capacity == 2**14  # 56 - 2 - 40 bits of headroom
    assert p.capacity > 10_000
    assert precision_bound(p, 10_000) < 1e-6
    assert precision_bound(p, 200) < precision_bound(p, 10_000)


def test_default_params_8192():
    p = default_params(8192)
    assert p.slots == 4096
    assert sum(p.coeff_mod_bit_sizes) <= MAX_COEFF_BITS_128[8192]
    assert fresh_noise_sigma(p) == pytest.approx(2 * fresh_noise_sigma(default_params()))


@pytest.mark.parametrize(
    ("n", "bits", "scale", "match"),
    [
        (2048, (27, 27), 20, "poly_modulus_degree"),
        (4096, (60, 50), 40, "128-bit security"),
        (4096, (56,), 40, "special prime"),
        (4096, (61, 40), 40, "20..60"),
        (4096, (56, 53), 54, "global_scale_bits"),
        (3000, (56, 53), 40, "poly_modulus_degree"),
    ],
)
def test_invalid_params_are_refused(n, bits, scale, match):
    with pytest.raises(ConfigError, match=match):
        CkksParams(n, bits, scale)


def test_default_params_rejects_other_degrees():
    with pytest.raises(ConfigError, match="4096 or 8192"):
        default_params(2048)


def test_n_chunks_pads_the_last_chunk():
    p = default_params()
    assert p.n_chunks(1682 * 32) == math.ceil(53824 / 2048) == 27
    assert p.n_chunks(2048) == 1
    assert p.n_chunks(2049) == 2


def test_precision_bound_rejects_negative_cohort():
    with pytest.raises(ConfigError):
        precision_bound(default_params(), -1)
