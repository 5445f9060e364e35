"""User-level differential privacy for federated training (DP-FedAvg), accounted with
Google's ``dp_accounting``.

* :mod:`~ppr.privacy.clipping`: per-device L2 clipping (dense and outer-product updates).
* :mod:`~ppr.privacy.noise`: every Gaussian sample (central and distributed noise) in one place.
* :mod:`~ppr.privacy.events`: the DpEvents of ppr's mechanisms and their JSON encoding.
* :mod:`~ppr.privacy.accounting`: ε from the PLD (default) / RDP accountants, noise calibration.
* :mod:`~ppr.privacy.ledger`: the immutable ledger of named releases, saved as JSON.
* :mod:`~ppr.privacy.popularity`: DP item-popularity counts (bounded contributions).
* :mod:`~ppr.privacy.plan`: δ and population floors, budget split, :func:`plan_privacy`.
* :mod:`~ppr.privacy.spend`: live per-device accounting and the data-independent filter.
* :mod:`~ppr.privacy.randomness`: secret (OS) or labelled seeded keys for the noise.
"""

from ppr.privacy.accounting import (
    ACCOUNTANTS,
    DEFAULT_ACCOUNTANT,
    PLD_INTERVAL,
    RDP_ORDERS,
    calibrate_event,
    calibrate_noise_multiplier,
    canonical_event,
    clear_cache,
    epsilon_of,
    gaussian_epsilon,
    make_accountant,
    quiet_absl,
)
from ppr.privacy.clipping import (
    clip_factors,
    clip_updates,
    clipped_outer_product_sum,
    outer_product_clip_factors,
)
from ppr.privacy.events import (
    dpfedavg_event,
    event_from_json,
    event_to_json,
    gaussian_rounds_event,
    realized_rounds_event,
)
from ppr.privacy.ledger import LedgerEntry, PrivacyLedger, ledger_from_json, load_ledger
from ppr.privacy.noise import (
    central_noise,
    device_noise_share,
    device_noise_shares,
    distributed_noise_share_std,
    gaussian_noise,
    min_cohort_size,
    realized_noise_multiplier,
)
from ppr.privacy.plan import (
    MAX_DELTA,
    MIN_DP_POPULATION,
    PrivacyPlan,
    check_population,
    default_delta,
    max_delta,
    plan_privacy,
    popularity_noise_for_share,
    resolve_delta,
)
from ppr.privacy.popularity import (
    CsrItems,
    bounded_contributions,
    csr_from_pairs,
    private_item_counts,
)
from ppr.privacy.randomness import NoiseSource, noise_source, secret_key
from ppr.privacy.spend import PrivacySpend, load_spend, spend_from_json

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "MAX_DELTA",
    "MIN_DP_POPULATION",
    "PLD_INTERVAL",
    "RDP_ORDERS",
    "CsrItems",
    "LedgerEntry",
    "NoiseSource",
    "PrivacyLedger",
    "PrivacyPlan",
    "PrivacySpend",
    "bounded_contributions",
    "calibrate_event",
    "calibrate_noise_multiplier",
    "canonical_event",
    "central_noise",
    "check_population",
    "clear_cache",
    "clip_factors",
    "clip_updates",
    "clipped_outer_product_sum",
    "csr_from_pairs",
    "default_delta",
    "device_noise_share",
    "device_noise_shares",
    "distributed_noise_share_std",
    "dpfedavg_event",
    "epsilon_of",
    "event_from_json",
    "event_to_json",
    "gaussian_epsilon",
    "gaussian_noise",
    "gaussian_rounds_event",
    "ledger_from_json",
    "load_ledger",
    "load_spend",
    "make_accountant",
    "max_delta",
    "min_cohort_size",
    "noise_source",
    "outer_product_clip_factors",
    "plan_privacy",
    "popularity_noise_for_share",
    "private_item_counts",
    "quiet_absl",
    "realized_noise_multiplier",
    "realized_rounds_event",
    "resolve_delta",
    "secret_key",
    "spend_from_json",
]
