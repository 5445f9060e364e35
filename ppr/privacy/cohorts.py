"""DP cohort statistics for cold start: noisy cohort sizes and cohort x item counts.

A *cohort* is a group of users a new device can name without sending anything:

* **attribute cohorts**: the combination of a few coarse attributes (age band, gender,
  occupation). The domain of cohorts is the product of the attributes' *public* vocabularies
  (:data:`VOCABULARY`, plus :data:`UNKNOWN` for a missing or unlisted value): it never depends on
  which combinations occur in the data.
* **anonymous cohorts**: ``n`` public centroids (k-means, with the public seed, of the rows of
  the released item matrix: post-processing of a DP release). A device assigns itself, locally,
  to the centroid nearest the mean of its own items' vectors; a device with no items has none.

The release (user-level DP, add/remove one user; one user is in at most one cohort):

* noisy size of every cohort of the domain: L2 sensitivity 1, Gaussian noise std ``σ``;
* noisy cohort x item counts: each user counts at most ``m`` distinct items once (a random subset
  when it holds more, :func:`~ppr.privacy.popularity.bounded_contributions`), all in its own
  cohort's row: L2 sensitivity ``sqrt(m)``, noise std ``σ·sqrt(m)``;
* noisy global item counts (the fallback), every member's ``m`` items: sensitivity ``sqrt(m)``,
  noise std ``σ·sqrt(m)``.

The three are one mechanism with DpEvent ``Composed(3 x Gaussian(σ))`` (exactly a Gaussian of
multiplier ``σ/sqrt(3)``), calibrated by :func:`cohort_noise_multiplier` so that this release
*alone* has ``(ε_cohort, δ)``; the run's ledger composes it with training, so the run's total ε
grows with it. A cohort is *released* (its size and counts published, usable on devices) only
when its NOISY size is ``>= K``: a decision on DP output, hence free (post-processing). A cohort
of true size ``n`` passes with probability ``1 - Φ((K - n)/σ)`` (:func:`pass_probability`; for
``n = K/2`` that is ``Φ(-K/(2σ))``). Nothing is published about cohorts that fail.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dp_accounting
import jax
import numpy as np
from dp_accounting import dp_event

from ppr.data.movielens import AGE_BANDS, OCCUPATIONS
from ppr.errors import PprError
from ppr.io import atomic_write_json
from ppr.privacy._checks import check_count, check_non_negative
from ppr.privacy.accounting import calibrate_event
from ppr.privacy.noise import gaussian_noise
from ppr.privacy.popularity import CsrItems, bounded_contributions

#: MovieLens-100K's occupation list (its public ``u.occupation`` file).
ML100K_OCCUPATIONS = (
    "administrator", "artist", "doctor", "educator", "engineer", "entertainment", "executive",
    "healthcare", "homemaker", "lawyer", "librarian", "marketing", "none", "other", "programmer",
    "retired", "salesman", "scientist", "student", "technician", "writer",
)  # fmt: skip
#: The public vocabulary of each attribute (ML-1M and ML-100K, and the synthetic set).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "age_band": AGE_BANDS,
    "gender": ("M", "F"),
    "occupation": tuple(dict.fromkeys(OCCUPATIONS + ML100K_OCCUPATIONS)),
}
UNKNOWN = "?"
COHORTS_FILE = "cohorts.json"
SEPARATOR = " | "


def cohort_domain(attributes: Sequence[str]) -> list[str]:
    """Labels of every cohort over ``attributes`` (public: the product of the vocabularies)."""
    for a in attributes:
        if a not in VOCABULARY:
            raise PprError(f"unknown cohort attribute {a!r}; known: {', '.join(VOCABULARY)}.")
    values = [(*VOCABULARY[a], UNKNOWN) for a in attributes]
    return [SEPARATOR.join(combo) for combo in itertools.product(*values)]


def attribute_labels(frame: Any, users: np.ndarray, attributes: Sequence[str]) -> list[str]:
    """The cohort label of each of ``users`` (rows of the attribute table ``frame``; a missing
    table, column or unlisted value reads :data:`UNKNOWN`)."""
    users = np.asarray(users, np.int64)
    cols = []
    for a in attributes:
        known = set(VOCABULARY[a])
        if frame is None or a not in frame.columns:
            cols.append([UNKNOWN] * users.size)
            continue
        raw = frame[a].to_numpy(dtype=object)[users]
        cols.append([str(v) if str(v) in known else UNKNOWN for v in raw])
    return [SEPARATOR.join(parts) for parts in zip(*cols, strict=True)] if cols else []


def kmeans_centroids(points: np.ndarray, n: int, seed: int, iterations: int = 25) -> np.ndarray:
    """``n`` k-means centroids of ``points`` (k-means++ start with ``seed``; Lloyd steps).

    Used on the released item matrix only (public): post-processing, no privacy cost."""
    x = np.asarray(points, np.float64)
    n = min(int(n), x.shape[0])
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xC0407]))
    centers = [x[rng.integers(x.shape[0])]]
    for _ in range(1, n):
        d2 = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
        total = d2.sum()
        pick = rng.integers(x.shape[0]) if total <= 0 else rng.choice(x.shape[0], p=d2 / total)
        centers.append(x[pick])
    c = np.asarray(centers)
    for _ in range(iterations):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(-1), axis=1)
        for j in range(n):
            if np.any(lab == j):
                c[j] = x[lab == j].mean(axis=0)
    return c


def nearest_centroid(item_factors: np.ndarray, centroids: np.ndarray, items: np.ndarray) -> int:
    """On the device: the centroid nearest the mean vector of its own ``items``; -1 if none."""
    items = np.unique(np.asarray(items, np.int64))
    if items.size == 0:
        return -1
    mean = np.asarray(item_factors, np.float64)[items].mean(axis=0)
    return int(np.argmin(((np.asarray(centroids) - mean) ** 2).sum(axis=1)))


def cohort_event(noise_multiplier: float) -> dp_event.DpEvent:
    """The release's DpEvent: sizes, cohort counts, global counts, each ``Gaussian(σ)``."""
    check_non_negative("noise_multiplier", noise_multiplier)
    if noise_multiplier == 0:
        return dp_accounting.NonPrivateDpEvent()
    g = dp_accounting.GaussianDpEvent(float(noise_multiplier))
    return dp_accounting.ComposedDpEvent([g, g, g])


def cohort_noise_multiplier(epsilon: float, delta: float, accountant: str = "pld") -> float:
    """σ such that :func:`cohort_event` alone is ``(epsilon, delta)``-DP (0 for ε = inf)."""
    if math.isinf(epsilon):
        return 0.0
    return calibrate_event(cohort_event, float(epsilon), float(delta), accountant)


def pass_probability(true_size: float, min_size: float, noise_multiplier: float) -> float:
    """P(noisy size >= K) for a cohort of ``true_size``: ``1 - Φ((K - n)/σ)``."""
    if noise_multiplier <= 0:
        return 1.0 if true_size >= min_size else 0.0
    z = (float(min_size) - float(true_size)) / float(noise_multiplier)
    return 0.5 * math.erfc(z / math.sqrt(2.0))


Summation = Callable[[np.ndarray, np.ndarray, int, np.ndarray], np.ndarray]


def plain_sum(owners: np.ndarray, cols: np.ndarray, n_values: int, noise: np.ndarray) -> np.ndarray:
    """The trusted curator's sum: ``noise`` plus a one at ``cols[j]`` for every entry ``j``
    (device ``owners[j]`` contributes it). A secure summation computes the same sum without
    seeing any device's entries (``ppr.experiments.popularity.secure_summation``)."""
    return np.bincount(np.asarray(cols, np.int64), minlength=int(n_values)) + noise


def noisy_cohort_counts(
    key: jax.Array,
    cohort_of_user: np.ndarray,
    user_items: CsrItems,
    n_cohorts: int,
    n_items: int,
    max_items: int,
    noise_multiplier: float,
    summation: Summation = plain_sum,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(noisy sizes, noisy cohort x item counts, noisy global counts) of the module docstring.

    ``cohort_of_user[u]``: user u's cohort in ``[0, n_cohorts)``, or -1 (counted globally only).
    Noise: std ``σ`` on sizes, ``σ·sqrt(max_items)`` on every count (three independent keys).
    One device's contribution is a 0/1 vector over ``[sizes | cohort x item | global]`` with at
    most ``1 + 2 max_items`` ones, summed by ``summation`` (L2 norm ``<= sqrt(1 + 2 max_items)``).
    """
    check_count("n_cohorts", n_cohorts)
    check_non_negative("noise_multiplier", noise_multiplier)
    cohort = np.asarray(cohort_of_user, np.int64)
    n_c, n_i = int(n_cohorts), int(n_items)
    k_sample, k_size, k_count, k_global = jax.random.split(key, 4)
    users, items = bounded_contributions(k_sample, user_items, n_i, max_items)
    in_c = np.flatnonzero(cohort >= 0)
    c = cohort[users]
    keep = c >= 0
    owners = np.concatenate([in_c, users[keep], users])
    cols = np.concatenate(
        [cohort[in_c], n_c + c[keep] * n_i + items[keep], n_c * (1 + n_i) + items]
    )
    std = float(noise_multiplier) * math.sqrt(int(max_items))
    noise = np.concatenate(
        [
            np.asarray(gaussian_noise(k_size, (n_c,), float(noise_multiplier)), np.float64),
            np.asarray(gaussian_noise(k_count, (n_c, n_i), std), np.float64).ravel(),
            np.asarray(gaussian_noise(k_global, (n_i,), std), np.float64),
        ]
    )
    total = np.asarray(summation(owners, cols, n_c * (1 + n_i) + n_i, noise), np.float64)
    sizes, counts = total[:n_c], total[n_c : n_c * (1 + n_i)].reshape(n_c, n_i)
    return sizes, counts, total[n_c * (1 + n_i) :]


@dataclass(frozen=True)
class CohortRelease:
    """What the cohort release publishes (``cohorts.json``): only cohorts whose noisy size passed
    ``min_cohort_size``, the global fallback counts, ``population`` (the sum of the noisy sizes
    of every cohort of the domain, released or not: post-processing), and how it was made.

    ``labels[j]``, ``sizes[j]`` and ``counts[j]`` describe released cohort j. ``centroids`` is set
    for anonymous cohorts (labels ``"anon-<i>"``, centroid i)."""

    kind: str
    attributes: tuple[str, ...]
    labels: tuple[str, ...]
    sizes: np.ndarray
    counts: np.ndarray
    global_counts: np.ndarray
    min_cohort_size: int
    max_items: int
    noise_multiplier: float
    epsilon: float
    delta: float
    noise: str = ""
    centroids: np.ndarray | None = None
    n_domain: int = 0
    population: float = 0.0
    _index: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._index.update({lab: j for j, lab in enumerate(self.labels)})

    @property
    def count_std(self) -> float:
        """Noise std of one released count: ``σ·sqrt(m)``."""
        return self.noise_multiplier * math.sqrt(self.max_items)

    def pass_probability(self, true_size: float) -> float:
        return pass_probability(true_size, self.min_cohort_size, self.noise_multiplier)

    def cohort_of(
        self,
        attributes: Mapping[str, Any] | None = None,
        items: np.ndarray | None = None,
        item_factors: np.ndarray | None = None,
    ) -> int:
        """Index of the released cohort a device belongs to, computed locally; -1 if none (no
        attributes / no items, or its cohort was not released)."""
        if self.kind == "anonymous":
            if items is None or item_factors is None or self.centroids is None:
                return -1
            c = nearest_centroid(item_factors, self.centroids, items)
            return self._index.get(f"anon-{c}", -1) if c >= 0 else -1
        if not attributes:
            return -1
        parts = []
        for a in self.attributes:
            v = attributes.get(a)
            parts.append(str(v) if v is not None and str(v) in VOCABULARY[a] else UNKNOWN)
        return self._index.get(SEPARATOR.join(parts), -1)

    def global_scores(self) -> np.ndarray:
        """Global private popularity as a distribution (negative noisy counts clipped to 0)."""
        g = np.maximum(self.global_counts, 0.0)
        return g / g.sum() if g.sum() > 0 else g

    def shrinkage(self, cohort: int) -> float:
        """Weight ``w_c`` in ``[0, 1]`` of released cohort ``cohort``'s own counts (empirical
        Bayes, post-processing only): its expected mass is ``T_c = n_c · m̄`` (noisy size times
        the mean items per user, ``Σ global / population``), its distribution ``d_c = c / T_c``
        carries noise variance ``v = (σ·sqrt(m) / T_c)²`` per item, and the spread of the cohort
        around the global distribution is ``s² = mean((d_c - d_g)²) - v`` (at least 0):
        ``w_c = s² / (s² + v)``."""
        total = float(self.global_counts.sum())
        if self.population <= 0 or total <= 0:
            return 0.0
        mass = float(self.sizes[cohort]) * total / self.population
        if mass <= 0:
            return 0.0
        d_c = self.counts[cohort] / mass
        v = (self.count_std / mass) ** 2
        v_g = (self.count_std / total) ** 2
        spread = float(np.mean((d_c - self.global_counts / total) ** 2)) - v - v_g
        return max(spread, 0.0) / (max(spread, 0.0) + v)

    def scores(self, cohort: int) -> np.ndarray:
        """Cohort prior of released cohort ``cohort`` (global scores for -1):
        ``d_g + w_c (d_c - d_g)`` with the weight of :meth:`shrinkage` (noisier or smaller
        cohorts lean on the global counts). Post-processing of the release."""
        glob = self.global_scores()
        if cohort < 0:
            return glob
        total = float(self.global_counts.sum())
        w = self.shrinkage(cohort)
        if w <= 0:
            return glob
        d_c = self.counts[cohort] * self.population / (float(self.sizes[cohort]) * total)
        return glob + w * (d_c - glob)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "attributes": list(self.attributes),
            "min_cohort_size": self.min_cohort_size,
            "max_items_per_user": self.max_items,
            "noise_multiplier": self.noise_multiplier,
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise": self.noise,
            "n_domain": self.n_domain,
            "noisy_population": self.population,
            "size_noise_std": self.noise_multiplier,
            "count_noise_std": self.count_std,
            "cohorts": [
                {"label": lab, "noisy_size": float(s), "counts": c.astype(np.float32).tolist()}
                for lab, s, c in zip(self.labels, self.sizes, self.counts, strict=True)
            ],
            "global_counts": self.global_counts.astype(np.float32).tolist(),
            "centroids": None if self.centroids is None else self.centroids.tolist(),
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> CohortRelease:
        n_items = len(d["global_counts"])
        cohorts = d["cohorts"]
        cent = d.get("centroids")
        return cls(
            kind=str(d["kind"]),
            attributes=tuple(d["attributes"]),
            labels=tuple(str(c["label"]) for c in cohorts),
            sizes=np.array([c["noisy_size"] for c in cohorts], np.float64),
            counts=np.array([c["counts"] for c in cohorts], np.float64).reshape(-1, n_items),
            global_counts=np.asarray(d["global_counts"], np.float64),
            min_cohort_size=int(d["min_cohort_size"]),
            max_items=int(d["max_items_per_user"]),
            noise_multiplier=float(d["noise_multiplier"]),
            epsilon=float(d["epsilon"]),
            delta=float(d["delta"]),
            noise=str(d.get("noise", "")),
            centroids=None if cent is None else np.asarray(cent, np.float64),
            n_domain=int(d.get("n_domain", 0)),
            population=float(d.get("noisy_population", 0.0)),
        )

    def save(self, path: str | Path) -> Path:
        return atomic_write_json(Path(path), self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> CohortRelease:
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise PprError(f"{path}: not a cohort release ({exc}).") from None


def release_cohorts(
    key: jax.Array,
    labels: Sequence[str],
    domain: Sequence[str],
    user_items: CsrItems,
    n_items: int,
    *,
    min_size: int,
    max_items: int,
    noise_multiplier: float,
    meta: Mapping[str, Any],
    summation: Summation = plain_sum,
) -> CohortRelease:
    """Release the cohort statistics of users whose cohort labels are ``labels`` (one per row of
    ``user_items``; ``""``: no cohort) over the public ``domain``; keep cohorts whose NOISY size
    is ``>= min_size``. ``meta``: kind, attributes, epsilon, delta, noise, centroids."""
    index = {lab: j for j, lab in enumerate(domain)}
    cohort = np.array([index.get(lab, -1) if lab else -1 for lab in labels], np.int64)
    if np.any((cohort < 0) & np.array([bool(x) for x in labels], bool)):
        raise PprError("a user's cohort label is outside the public cohort domain.")
    sizes, counts, glob = noisy_cohort_counts(
        key, cohort, user_items, len(domain), n_items, max_items, noise_multiplier, summation
    )
    passed = np.flatnonzero(sizes >= min_size)  # decision on noisy sizes only
    return CohortRelease(
        kind=str(meta.get("kind", "attributes")),
        attributes=tuple(meta.get("attributes", ())),
        labels=tuple(domain[j] for j in passed),
        sizes=sizes[passed],
        counts=counts[passed],
        global_counts=glob,
        min_cohort_size=int(min_size),
        max_items=int(max_items),
        noise_multiplier=float(noise_multiplier),
        epsilon=float(meta.get("epsilon", math.inf)),
        delta=float(meta.get("delta", 0.0)),
        noise=str(meta.get("noise", "")),
        centroids=meta.get("centroids"),
        n_domain=len(domain),
        population=float(sizes.sum()),
    )
