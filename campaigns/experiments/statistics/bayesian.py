"""Chance to win and expected loss (docs/campaigns.md, "How the statistics work").

GrowthBook's Gaussian approximation with an uninformative (flat) prior: the relative lift
is taken as Normal(estimate, standard error²), so chance to win is Phi(estimate / se) and
expected loss is E[max(-lift, 0)].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from campaigns.experiments.statistics.frequentist import FloatArray, Lift


@dataclass(frozen=True)
class BayesianLift:
    chance_to_win: FloatArray  # P(lift > 0)
    expected_loss: FloatArray  # E[max(-lift, 0)]: relative loss expected from shipping the arm


def bayesian_lift(lift: Lift) -> BayesianLift:
    """Flat prior, Normal posterior on the relative lift (GrowthBook's Gaussian approximation)."""
    mean, sd = lift.estimate, lift.standard_error
    with np.errstate(divide="ignore", invalid="ignore"):
        z = mean / sd
        return BayesianLift(
            chance_to_win=stats.norm.cdf(z),
            expected_loss=sd * stats.norm.pdf(z) - mean * stats.norm.cdf(-z),
        )
