"""Evaluation: ranking metrics (recall@k, NDCG@k, catalog coverage), vectorized over users."""

from ppr.evaluation.metrics import RankingMetrics, evaluate_scores, rank_top_k

__all__ = ["RankingMetrics", "evaluate_scores", "rank_top_k"]
