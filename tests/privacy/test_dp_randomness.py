"""Noise keys: secret mode draws from OS entropy and never serializes; seeded mode reproduces."""

import pickle

import jax
import numpy as np
import pytest
from dp_stats import assert_gaussian_std

from ppr.errors import ConfigError
from ppr.privacy import NoiseSource, gaussian_noise, noise_source, secret_key


def test_secret_keys_are_fresh_and_shaped_like_prng_keys() -> None:
    template = jax.random.PRNGKey(0)
    keys = [np.asarray(secret_key()) for _ in range(8)]
    assert all(k.shape == template.shape and k.dtype == template.dtype for k in keys)
    assert len({k.tobytes() for k in keys}) == 8
    a, b = NoiseSource.secret(), NoiseSource.secret()
    assert not np.array_equal(a.gaussian((1,), 16, 1.0), b.gaussian((1,), 16, 1.0))


def test_secret_source_is_labelled_and_never_serialized() -> None:
    src = noise_source(None)
    assert src.is_secret and src.label.startswith("secret")
    assert repr(src) == "NoiseSource(mode='secret')"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(src)
    with pytest.raises(AttributeError):
        src.mode = "seeded"


def test_seeded_source_reproduces_and_says_it_is_not_private() -> None:
    a, b = noise_source(7), NoiseSource.seeded(7)
    assert not a.is_secret and "NOT private" in a.label and "noise_seed = 7" in a.label
    np.testing.assert_array_equal(a.gaussian((3, 1), 32, 2.0), b.gaussian((3, 1), 32, 2.0))
    assert not np.array_equal(a.gaussian((3, 1), 32, 2.0), a.gaussian((3, 2), 32, 2.0))
    # the samples come from gaussian_noise with the derived key, and have the right std
    key = jax.random.fold_in(jax.random.PRNGKey(7), 4)
    np.testing.assert_array_equal(a.gaussian((4,), 8, 1.5), gaussian_noise(key, 8, 1.5))
    assert_gaussian_std(a.gaussian((5,), 200_000, 1.5), 1.5)
    assert pickle.loads(pickle.dumps(a)).label == a.label


@pytest.mark.parametrize(
    ("mode", "seed", "message"),
    [("secret", 3, "`noise_seed` must be unset"), ("seeded", -1, "non-negative integer"),
     ("os", None, "'secret' or 'seeded'")],
)  # fmt: skip
def test_bad_modes(mode, seed, message) -> None:
    with pytest.raises(ConfigError, match=message):
        NoiseSource(mode, seed)
