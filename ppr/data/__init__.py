"""Data: loaders for MovieLens-style logs, a synthetic generator, and train/test splits.

``loaders`` (dispatch on ``DataConfig.source``) over ``movielens`` (MovieLens releases) and
``tabular`` (generic CSV/Parquet logs), which share the parsing steps of ``_parse``.
"""

from ppr.data.interactions import Interactions

__all__ = ["Interactions"]
