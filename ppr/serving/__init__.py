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
from ppr.serving.errors import BudgetError, CodecError, ServingError
from ppr.serving.index import AnnoyIndex, ExactIndex, LocalIndex, load_index
from ppr.serving.recommender import (
    AnnoyRecommender,
    ExactRecommender,
    Explanation,
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
    "Encoded",
    "ExactIndex",
    "ExactRecommender",
    "Explanation",
    "LocalIndex",
    "Recommender",
    "ServingError",
    "build_for_budget",
    "decode",
    "encode",
    "entry_error_bound",
    "load_index",
    "load_recommender",
    "plan_device",
    "recommender_for_budget",
    "score_error_bound",
]
