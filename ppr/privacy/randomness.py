"""Where DP noise randomness comes from: secret OS entropy, or an explicit labelled seed.

The DP guarantee assumes nobody can rebuild the noise. The run's ``seed`` is written in its
config, so noise drawn from it can be regenerated and subtracted: no privacy at all. Hence:

* ``"secret"`` (the mode for anything that claims DP): the root key comes from the operating
  system's CSPRNG (:func:`secrets.token_bytes`, i.e. ``os.urandom``). It is held in memory only:
  never logged, never written, not in ``repr``, and the object refuses to be pickled (so it
  cannot travel into a checkpoint or a worker by accident; derive per-round keys with
  :meth:`NoiseSource.key` and send those if a worker must draw noise).
* ``"seeded"``: the root key is ``PRNGKey(noise_seed)``, for reproducible *experiments* (same
  noise every run, tests, debugging). Its :attr:`NoiseSource.label` says it is not private.

Every Gaussian sample is still drawn by :func:`ppr.privacy.noise.gaussian_noise` (one place to
swap in a secure sampler); this module only decides which key it gets. The sampling of the cohort
should take its key from the same secret source (which rounds sampled a device is secret too).
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ppr.errors import ConfigError
from ppr.privacy._checks import fmt
from ppr.privacy.noise import Shape, gaussian_noise


def secret_key() -> jax.Array:
    """A fresh JAX PRNG key (same shape/dtype as ``jax.random.PRNGKey``) from OS entropy."""
    template = jax.random.PRNGKey(0)
    n_bytes = template.size * template.dtype.itemsize
    words = np.frombuffer(secrets.token_bytes(n_bytes), dtype=template.dtype)
    return jnp.asarray(words.reshape(template.shape))


class NoiseSource:
    """The root of all DP noise keys of a run: ``"secret"`` (OS entropy) or ``"seeded"``.

    ``key(*path)`` derives a key by ``fold_in`` along ``path`` (e.g. ``key(round)``,
    ``key(round, device)``); ``gaussian(path, shape, std)`` draws through
    :func:`~ppr.privacy.noise.gaussian_noise`.
    """

    __slots__ = ("_root", "mode", "noise_seed")

    def __init__(self, mode: str = "secret", noise_seed: int | None = None) -> None:
        if mode == "secret":
            if noise_seed is not None:
                raise ConfigError(
                    f"`noise_seed` must be unset in secret noise mode. Found {fmt(noise_seed)}."
                )
            root = secret_key()
        elif mode == "seeded":
            if isinstance(noise_seed, bool) or not isinstance(noise_seed, int) or noise_seed < 0:
                raise ConfigError(
                    f"`noise_seed` must be a non-negative integer in seeded noise mode. "
                    f"Found {noise_seed!r}."
                )
            root = jax.random.PRNGKey(noise_seed)
        else:
            raise ConfigError(f"`noise mode` must be 'secret' or 'seeded'. Found {mode!r}.")
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "noise_seed", noise_seed)
        object.__setattr__(self, "_root", root)

    @classmethod
    def secret(cls) -> NoiseSource:
        return cls("secret")

    @classmethod
    def seeded(cls, noise_seed: int) -> NoiseSource:
        return cls("seeded", noise_seed)

    @property
    def is_secret(self) -> bool:
        return self.mode == "secret"

    @property
    def label(self) -> str:
        """One line for the run's output."""
        if self.is_secret:
            return "secret (OS entropy; the noise cannot be rebuilt, not reproducible)"
        return (
            f"seeded (noise_seed = {self.noise_seed}; reproducible experiment mode, NOT private: "
            "whoever knows the seed can rebuild and subtract the noise)"
        )

    def key(self, *path: int) -> jax.Array:
        """The key at ``path`` (``fold_in`` along it); the root key itself for an empty path."""
        k = self._root
        for p in path:
            k = jax.random.fold_in(k, int(p))
        return k

    def gaussian(self, path: Sequence[int], shape: Shape, std: float) -> jnp.ndarray:
        """``N(0, std²)`` samples with the key at ``path`` (via ``gaussian_noise``)."""
        return gaussian_noise(self.key(*path), shape, std)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("NoiseSource is immutable.")

    def __repr__(self) -> str:
        if self.is_secret:
            return "NoiseSource(mode='secret')"
        return f"NoiseSource(mode='seeded', noise_seed={self.noise_seed})"

    def __reduce__(self):
        if self.is_secret:
            raise TypeError(
                "a secret NoiseSource cannot be pickled (its key must not leave memory)."
            )
        return (NoiseSource, ("seeded", self.noise_seed))


def noise_source(noise_seed: int | None = None) -> NoiseSource:
    """``NoiseSource.secret()`` when ``noise_seed`` is None, else ``NoiseSource.seeded(seed)``."""
    return NoiseSource.secret() if noise_seed is None else NoiseSource.seeded(noise_seed)
