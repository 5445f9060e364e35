"""On-device serving: compressed embeddings, local top-k indexes, the device's recommender.

Layering: imports numpy, annoy, jax and ``ppr.model`` / ``ppr.data`` / ``ppr.errors`` /
``ppr.io`` only (never the federated, crypto, pipeline, experiment or reporting layers).
"""

from ppr.serving.budget import DEFAULT_BUDGET_MB, DevicePlan, build_for_budget, plan_device
from ppr.serving.codecs import (
    FORMATS,
    Encoded,
    decode,
    encode,
    entry_error_bound,
    score_error_bound,
)
from ppr.serving.device import DeviceSettings, ServingDevice, open_local, plan_local
from ppr.serving.errors import BudgetError, CodecError, ServingError
from ppr.serving.index import AnnoyIndex, ExactIndex, LocalIndex, load_index
from ppr.serving.recommender import (
    AnnoyRecommender,
    ExactRecommender,
    Explanation,
    PriorRecommender,
    Recommender,
    load_recommender,
    recommender_for_budget,
)

__all__ = [
    "DEFAULT_BUDGET_MB",
    "FORMATS",
    "AnnoyIndex",
    "AnnoyRecommender",
    "BudgetError",
    "CodecError",
    "DevicePlan",
    "DeviceSettings",
    "Encoded",
    "ExactIndex",
    "ExactRecommender",
    "Explanation",
    "LocalIndex",
    "PriorRecommender",
    "Recommender",
    "ServingDevice",
    "ServingError",
    "build_for_budget",
    "decode",
    "encode",
    "entry_error_bound",
    "load_index",
    "load_recommender",
    "open_local",
    "plan_device",
    "plan_local",
    "recommender_for_budget",
    "score_error_bound",
]
