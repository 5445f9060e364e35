"""Data: loaders for MovieLens-style logs, a synthetic generator, and train/test splits."""

from ppr.data.interactions import Interactions

__all__ = ["Interactions"]
