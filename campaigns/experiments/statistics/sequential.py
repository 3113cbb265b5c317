"""The always-valid lift that decides, however often the results are looked at.

Sequential testing uses always-valid asymptotic confidence sequences (Waudby-Smith, Arnold,
Wu, McAuliffe, Ramdas, "Time-uniform central limit theory and asymptotic confidence
sequences", arXiv:2103.06476, eq. 9 for the half-width, eq. 161 for rho, eq. 155 for the
p-value), GrowthBook's approach, rather than mSPRT: they need no prior on the effect size,
only one tuning number (the expected sample size, for which the interval is tightest), and
they give an interval, not only a stop/continue signal, so the same object answers "is
there a winner?" and "is any difference too small to matter?". The confidence sequence is
computed on the log of the ratio of means, not on the relative lift directly: the delta
method on the ratio itself is poorly calibrated in the small samples of the first daily
looks (simulating 25 daily looks at a 10% base rate, it had 4-5% false positives against
about 1% on the log scale, and found a 30% lift in a third of experiments instead of 55%).
The log interval maps back to relative lift as ``exp(bound) - 1``.

With several treatment arms, ``report.results`` runs it at ``alpha / number of arms``
(Bonferroni), so the chance of declaring any false winner stays under alpha.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from campaigns.experiments.statistics.frequentist import FloatArray, Moments


@dataclass(frozen=True)
class SequentialLift:
    """Always-valid interval for the relative lift and its p-value (see this module's docstring)."""

    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray
    conclusive: npt.NDArray[np.bool_]


def sequential_lift(
    control: Moments, treatment: Moments, alpha: float = 0.05, tuning_n: int = 5000
) -> SequentialLift:
    """Asymptotic confidence sequence on log(mean_t / mean_c), reported as relative lift.

    Valid however often it is looked at; undefined (NaN, never conclusive) while either arm
    has a zero mean.
    """
    rho_squared = (-2.0 * math.log(alpha) + math.log(-2.0 * math.log(alpha) + 1.0)) / tuning_n
    with np.errstate(divide="ignore", invalid="ignore"):
        defined = (control.mean > 0) & (treatment.mean > 0)
        log_ratio = np.log(np.where(defined, treatment.mean / control.mean, np.nan))
        variance = treatment.variance / (treatment.mean**2 * treatment.n) + control.variance / (
            control.mean**2 * control.n
        )
        variance = np.where(variance > 0, variance, np.nan)
        total_n = treatment.n + control.n
        # Per-observation variance of the estimator, as the paper's sigma².
        sigma_squared = variance * total_n
        growth = total_n * rho_squared + 1.0
        half_width = np.sqrt(
            sigma_squared
            * 2.0
            * growth
            * np.log(np.sqrt(growth) / alpha)
            / (total_n**2 * rho_squared)
        )
        statistic_squared = log_ratio**2 / variance
        e_value = np.exp(rho_squared * total_n * statistic_squared / (2.0 * growth)) / np.sqrt(
            growth
        )
        p_value = np.where(np.isfinite(e_value), np.minimum(1.0 / e_value, 1.0), 1.0)
        low = log_ratio - half_width
        high = log_ratio + half_width
    return SequentialLift(
        ci_low=np.expm1(low),
        ci_high=np.expm1(high),
        p_value=p_value,
        conclusive=(low > 0) | (high < 0),
    )
