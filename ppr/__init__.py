"""ppr: privacy-preserving recommender toolkit.

Subpackages, one concern each: ``data`` (loaders, synthetic generator, splits), ``model``
(implicit matrix factorization), ``federated`` (devices, cohorts, rounds), ``crypto`` (CKKS secure
aggregation),
``privacy`` (clipping, noise, accounting), ``serving`` (on-device recommendation), ``evaluation``
(ranking metrics) and ``reporting`` (tables, files, plots).
"""

__version__ = "0.1.0"
