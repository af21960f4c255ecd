"""Interval clustering of the T denoising tasks into k contiguous timestep intervals.

dp.py: the exact dynamic program; costs.py: the interval costs; intervals.py: uniform intervals
and the boundary check; from_config.py: what the trainer calls once before training;
`python -m diffmtl.clustering` prints and plots a clustering.
"""

from diffmtl.clustering.costs import COSTS, gradient_cost, log_snr_cost, snr_cost, timestep_cost
from diffmtl.clustering.dp import cost_versus_k, interval_clustering, optimal_costs
from diffmtl.clustering.intervals import check_boundaries, uniform_boundaries

__all__ = [
    "COSTS",
    "check_boundaries",
    "cost_versus_k",
    "gradient_cost",
    "interval_clustering",
    "log_snr_cost",
    "optimal_costs",
    "snr_cost",
    "timestep_cost",
    "uniform_boundaries",
]
