"""ppr: privacy-preserving recommender toolkit.

Subpackages, one concern each: ``data`` (loaders, synthetic generator, splits), ``model``
(implicit matrix factorization, baselines), ``federated`` (devices, cohorts, aggregation
strategies, server, trainer), ``crypto`` (CKKS secure aggregation), ``privacy`` (clipping, noise,
accounting), ``evaluation`` (ranking metrics) and ``reporting`` (sweeps, tables, files, plots).
One entry point per run: :func:`ppr.experiments.simulate.simulate`; run directories:
:mod:`ppr.experiments.rundir`. On-device serving (``serving``) is not built yet.
"""

__version__ = "0.1.0"
