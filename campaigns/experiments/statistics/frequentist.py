"""Fixed-horizon relative lift of one arm over another (docs/campaigns.md, "How the
statistics work").

It follows GrowthBook's frequentist engine: the relative lift of an arm over control,
``mean_arm / mean_control - 1``, with a delta-method standard error, a Welch t 95%
two-sided interval and a two-sided p-value. Both metrics are means over exposed shoppers:
conversion (a proportion, variance p(1-p)) and revenue per exposed shopper (variance from
the sum of squares).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Moments:
    """Mean and sample variance of a per-shopper metric over n shoppers (arrays broadcast)."""

    n: FloatArray
    mean: FloatArray
    variance: FloatArray


def conversion_moments(exposures: npt.ArrayLike, conversions: npt.ArrayLike) -> Moments:
    n = np.asarray(exposures, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.asarray(conversions, dtype=float) / n
    return Moments(n=n, mean=rate, variance=rate * (1.0 - rate))


def revenue_moments(
    exposures: npt.ArrayLike, revenue_sum: npt.ArrayLike, revenue_sum_squares: npt.ArrayLike
) -> Moments:
    n = np.asarray(exposures, dtype=float)
    total = np.asarray(revenue_sum, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = total / n
        variance = (np.asarray(revenue_sum_squares, dtype=float) - total * mean) / (n - 1.0)
    # Cancellation in sum-of-squares arithmetic can leave a tiny negative number.
    return Moments(n=n, mean=mean, variance=np.maximum(variance, 0.0))


@dataclass(frozen=True)
class Lift:
    """Fixed-horizon relative lift of treatment over control (NaN where undefined)."""

    estimate: FloatArray
    standard_error: FloatArray
    ci_low: FloatArray
    ci_high: FloatArray
    p_value: FloatArray


def relative_lift(control: Moments, treatment: Moments, alpha: float = 0.05) -> Lift:
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = treatment.mean / control.mean - 1.0
        # Delta method for mean_t / mean_c with independent arms.
        variance = treatment.variance / (control.mean**2 * treatment.n) + control.variance * (
            treatment.mean**2
        ) / (control.mean**4 * control.n)
        standard_error = np.sqrt(variance)
        # Welch-Satterthwaite degrees of freedom, as GrowthBook's engine.
        per_t = treatment.variance / treatment.n
        per_c = control.variance / control.n
        dof = (per_t + per_c) ** 2 / (per_t**2 / (treatment.n - 1.0) + per_c**2 / (control.n - 1.0))
        dof = np.where(np.isfinite(dof), dof, np.inf)
        standard_error = np.where(standard_error > 0, standard_error, np.nan)
        half_width = stats.t.ppf(1.0 - alpha / 2.0, dof) * standard_error
        p_value = 2.0 * stats.t.sf(np.abs(estimate) / standard_error, dof)
    return Lift(
        estimate=estimate,
        standard_error=standard_error,
        ci_low=estimate - half_width,
        ci_high=estimate + half_width,
        p_value=p_value,
    )
