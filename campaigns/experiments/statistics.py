"""What an experiment's numbers say: lift, chance to win, sequential verdict, SRM, holdout.

See docs/campaigns.md ("How the statistics work") for the full write-up with formulas.

Frequentist lift follows GrowthBook's frequentist engine: the relative lift of an arm over
control, ``mean_arm / mean_control - 1``, with a delta-method standard error, a Welch t
95% two-sided interval and a two-sided p-value. Both metrics are means over exposed
shoppers: conversion (a proportion, variance p(1-p)) and revenue per exposed shopper
(variance from the sum of squares).

Bayesian chance to win and expected loss use GrowthBook's Gaussian approximation with an
uninformative (flat) prior: the relative lift is taken as Normal(estimate, standard error²),
so chance to win is Phi(estimate / se) and expected loss is E[max(-lift, 0)].

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

With several treatment arms, the sequential test runs at ``alpha / number of arms``
(Bonferroni), so the chance of declaring any false winner stays under alpha.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy import stats

from campaigns.experiments.assignment import HOLDOUT

FloatArray = npt.NDArray[np.float64]
Goal = Literal["conversion", "revenue"]
Status = Literal["collecting", "significant", "no_difference", "srm_failed"]

_CENTS = Decimal("0.01")


@dataclass(frozen=True)
class ArmData:
    """What was observed for one arm (or the holdout) since the experiment started."""

    key: str
    exposures: int
    conversions: int
    revenue_sum: Decimal | float  # attributed revenue over all exposed shoppers
    revenue_sum_squares: Decimal | float  # sum over exposed shoppers of (their revenue)²


@dataclass(frozen=True)
class AnalysisSettings:
    goal: Goal = "conversion"
    alpha: float = 0.05
    # Guards: no verdict before both are met.
    min_exposures_per_arm: int = 100
    min_runtime: timedelta = timedelta(days=7)  # a full week, so weekday effects even out
    # Past either of these without a winner, the answer is "no difference".
    max_runtime: timedelta = timedelta(days=42)
    max_exposures_per_arm: int | None = None
    # A relative lift smaller than this does not matter to the business.
    practical_threshold: float = 0.02
    # Total exposures (arm + control) at which the confidence sequence is tightest.
    sequential_tuning_n: int = 5000
    srm_p_value_threshold: float = 0.001


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


@dataclass(frozen=True)
class SequentialLift:
    """Always-valid interval for the relative lift and its p-value (see the module docstring)."""

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


@dataclass(frozen=True)
class Srm:
    p_value: float
    ok: bool


def sample_ratio_mismatch(
    observed: Mapping[str, int], expected_percent: Mapping[str, float], threshold: float = 0.001
) -> Srm:
    """Chi-square goodness of fit of observed exposures against the configured split.

    ``expected_percent`` covers every group that can receive shoppers (arms and holdout) and
    sums to 100.
    """
    keys = [key for key in expected_percent if expected_percent[key] > 0]
    stray = sum(count for key, count in observed.items() if key not in keys)
    if stray:
        # Shoppers in a group configured to get none: the split is broken, whatever the sizes.
        return Srm(p_value=0.0, ok=False)
    counts = np.array([observed.get(key, 0) for key in keys], dtype=float)
    total = counts.sum()
    if len(keys) < 2 or total == 0:
        return Srm(p_value=1.0, ok=True)
    shares = np.array([expected_percent[key] for key in keys], dtype=float)
    expected = total * shares / shares.sum()
    p_value = float(stats.chisquare(counts, expected).pvalue)
    return Srm(p_value=p_value, ok=p_value >= threshold)


@dataclass(frozen=True)
class ArmComparison:
    """One treatment arm against control on the goal metric, as plain numbers."""

    key: str
    lift: float
    ci_low: float
    ci_high: float
    p_value: float
    chance_to_win: float
    expected_loss: float
    sequential_ci_low: float
    sequential_ci_high: float
    sequential_p_value: float
    conclusive: bool


def compare_arm(
    key: str,
    control: Moments,
    treatment: Moments,
    *,
    alpha: float,
    sequential_alpha: float,
    tuning_n: int,
) -> ArmComparison:
    lift = relative_lift(control, treatment, alpha)
    bayes = bayesian_lift(lift)
    sequential = sequential_lift(control, treatment, sequential_alpha, tuning_n)
    return ArmComparison(
        key=key,
        lift=float(lift.estimate),
        ci_low=float(lift.ci_low),
        ci_high=float(lift.ci_high),
        p_value=float(lift.p_value),
        chance_to_win=float(bayes.chance_to_win),
        expected_loss=float(bayes.expected_loss),
        sequential_ci_low=float(sequential.ci_low),
        sequential_ci_high=float(sequential.ci_high),
        sequential_p_value=float(sequential.p_value),
        conclusive=bool(sequential.conclusive),
    )


@dataclass(frozen=True)
class Decision:
    status: Status
    winner: str | None
    method: str  # which rule decided, for the marketer and for debugging


def decide(
    control_key: str,
    exposures: Mapping[str, int],
    comparisons: Sequence[ArmComparison],
    srm: Srm,
    runtime: timedelta,
    settings: AnalysisSettings,
) -> Decision:
    """The verdict, by the first rule that applies (docs/campaigns.md, "Decision rule").

    1. SRM failed: the split is broken, so no number can be trusted and nobody wins.
    2. Guards: fewer than ``min_exposures_per_arm`` in some arm, or less than
       ``min_runtime``: collecting.
    3. Some arm's confidence sequence lies entirely above 0: significant; the winner is the
       conclusive arm with the largest lift. If instead every arm's lies entirely below 0,
       control wins.
    4. Every arm's confidence sequence lies inside ±``practical_threshold``: no difference
       that matters, whatever more data would show.
    5. ``max_runtime`` or ``max_exposures_per_arm`` reached without the above: no difference.
    6. Otherwise: collecting.
    """
    if not srm.ok:
        return Decision("srm_failed", None, "srm_chi_square")
    if min(exposures.values(), default=0) < settings.min_exposures_per_arm:
        return Decision("collecting", None, "guard_min_exposures")
    if runtime < settings.min_runtime:
        return Decision("collecting", None, "guard_min_runtime")
    if not comparisons:
        return Decision("collecting", None, "no_treatment_arm")
    better = [c for c in comparisons if c.conclusive and c.sequential_ci_low > 0]
    if better:
        best = max(better, key=lambda comparison: comparison.lift)
        return Decision("significant", best.key, "sequential_confidence_sequence")
    if all(c.conclusive and c.sequential_ci_high < 0 for c in comparisons):
        return Decision("significant", control_key, "sequential_confidence_sequence")
    threshold = settings.practical_threshold
    if all(
        -threshold < c.sequential_ci_low and c.sequential_ci_high < threshold for c in comparisons
    ):
        return Decision("no_difference", None, "practical_equivalence")
    if runtime >= settings.max_runtime:
        return Decision("no_difference", None, "max_runtime")
    if (
        settings.max_exposures_per_arm is not None
        and min(exposures.values()) >= settings.max_exposures_per_arm
    ):
        return Decision("no_difference", None, "max_exposures")
    return Decision("collecting", None, "sequential_confidence_sequence")


@dataclass(frozen=True)
class Incrementality:
    """What the treated population (all arms together) gained over the holdout."""

    incremental_conversions: float
    incremental_revenue: float
    lift: Lift


def holdout_incrementality(
    treated: Sequence[ArmData], holdout: ArmData, goal: Goal, alpha: float = 0.05
) -> Incrementality:
    """Treated minus what the treated would have done at the holdout's rates.

    incremental conversions = conversions_treated - exposures_treated * rate_holdout, and the
    same for revenue; the lift is treated over holdout on the goal metric.
    """
    pooled = _pooled(treated)
    holdout_conversion = conversion_moments(holdout.exposures, holdout.conversions)
    holdout_revenue = revenue_moments(
        holdout.exposures, float(holdout.revenue_sum), float(holdout.revenue_sum_squares)
    )
    if goal == "conversion":
        lift = relative_lift(
            holdout_conversion, conversion_moments(pooled.exposures, pooled.conversions), alpha
        )
    else:
        lift = relative_lift(
            holdout_revenue,
            revenue_moments(
                pooled.exposures, float(pooled.revenue_sum), float(pooled.revenue_sum_squares)
            ),
            alpha,
        )
    return Incrementality(
        incremental_conversions=pooled.conversions
        - pooled.exposures * float(holdout_conversion.mean),
        incremental_revenue=float(pooled.revenue_sum)
        - pooled.exposures * float(holdout_revenue.mean),
        lift=lift,
    )


def results(
    arms: Sequence[ArmData],
    holdout: ArmData | None,
    weights: Mapping[str, float],
    control_key: str,
    started_at: datetime,
    now: datetime,
    settings: AnalysisSettings | None = None,
) -> dict[str, Any]:
    """The experiment's results as a JSON-serialisable dict with stable field names.

    ``weights`` maps each arm key to its weight (the arms' weights sum to 100) and may map
    ``"holdout"`` to the holdout percent; the SRM check expects the holdout to get that share
    of all shoppers and each arm its weight's share of the rest. In bandit mode, pass the
    exposure-weighted average of the weights used so far, since the split changed over time.
    """
    settings = settings or AnalysisSettings()
    by_key = {arm.key: arm for arm in arms}
    if len(by_key) != len(arms):
        raise ValueError("arms: keys must be unique")
    if control_key not in by_key:
        raise ValueError(f"control_key: '{control_key}' is not one of the arms")
    if set(weights) - {HOLDOUT} != set(by_key):
        raise ValueError("weights: must name exactly the arms (and optionally the holdout)")

    control = by_key[control_key]
    treatments = [arm for arm in arms if arm.key != control_key]
    sequential_alpha = settings.alpha / max(len(treatments), 1)
    control_moments = _goal_moments(control, settings.goal)
    comparisons = {
        arm.key: compare_arm(
            arm.key,
            control_moments,
            _goal_moments(arm, settings.goal),
            alpha=settings.alpha,
            sequential_alpha=sequential_alpha,
            tuning_n=settings.sequential_tuning_n,
        )
        for arm in treatments
    }

    srm = sample_ratio_mismatch(
        observed={
            **{arm.key: arm.exposures for arm in arms},
            **({HOLDOUT: holdout.exposures} if holdout is not None else {}),
        },
        expected_percent=_expected_percent(weights),
        threshold=settings.srm_p_value_threshold,
    )
    decision = decide(
        control_key,
        {arm.key: arm.exposures for arm in arms},
        list(comparisons.values()),
        srm,
        now - started_at,
        settings,
    )
    return {
        "goal": settings.goal,
        "srm": {"p_value": _number(srm.p_value), "ok": srm.ok},
        "variants": [_variant(arm, comparisons.get(arm.key)) for arm in arms],
        "holdout": _holdout(arms, holdout, settings) if holdout is not None else None,
        "decision": {
            "status": decision.status,
            "winner": decision.winner,
            "method": decision.method,
        },
    }


def _goal_moments(arm: ArmData, goal: Goal) -> Moments:
    if goal == "conversion":
        return conversion_moments(arm.exposures, arm.conversions)
    return revenue_moments(arm.exposures, float(arm.revenue_sum), float(arm.revenue_sum_squares))


def _pooled(arms: Sequence[ArmData]) -> ArmData:
    return ArmData(
        key="treated",
        exposures=sum(arm.exposures for arm in arms),
        conversions=sum(arm.conversions for arm in arms),
        revenue_sum=math.fsum(float(arm.revenue_sum) for arm in arms),
        revenue_sum_squares=math.fsum(float(arm.revenue_sum_squares) for arm in arms),
    )


def _expected_percent(weights: Mapping[str, float]) -> dict[str, float]:
    holdout_percent = float(weights.get(HOLDOUT, 0.0))
    treated_share = (100.0 - holdout_percent) / 100.0
    expected = {
        key: float(weight) * treated_share for key, weight in weights.items() if key != HOLDOUT
    }
    expected[HOLDOUT] = holdout_percent
    return expected


def _variant(arm: ArmData, comparison: ArmComparison | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "key": arm.key,
        "exposures": arm.exposures,
        "conversions": arm.conversions,
        "revenue": _money(arm.revenue_sum),
        "conversion_rate": _number(arm.conversions / arm.exposures) if arm.exposures else None,
        "lift": None,
        "chance_to_win": None,
        "p_value": None,
        "expected_loss": None,
        "sequential": None,
    }
    if comparison is None or not math.isfinite(comparison.lift):
        return row
    row["lift"] = _interval(comparison.lift, comparison.ci_low, comparison.ci_high)
    row["chance_to_win"] = _number(comparison.chance_to_win)
    row["p_value"] = _number(comparison.p_value)
    row["expected_loss"] = _number(comparison.expected_loss)
    row["sequential"] = {
        "ci_low": _number(comparison.sequential_ci_low),
        "ci_high": _number(comparison.sequential_ci_high),
        "p_value": _number(comparison.sequential_p_value),
        "conclusive": comparison.conclusive,
    }
    return row


def _holdout(
    arms: Sequence[ArmData], holdout: ArmData, settings: AnalysisSettings
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "exposures": holdout.exposures,
        "conversions": holdout.conversions,
        "revenue": _money(holdout.revenue_sum),
        "incremental_conversions": None,
        "incremental_revenue": None,
        "lift": None,
    }
    if holdout.exposures == 0:
        return row
    incrementality = holdout_incrementality(arms, holdout, settings.goal, settings.alpha)
    row["incremental_conversions"] = _number(incrementality.incremental_conversions)
    row["incremental_revenue"] = _money(incrementality.incremental_revenue)
    lift = incrementality.lift
    if math.isfinite(float(lift.estimate)):
        row["lift"] = _interval(float(lift.estimate), float(lift.ci_low), float(lift.ci_high))
    return row


def _interval(estimate: float, low: float, high: float) -> dict[str, float | None]:
    return {"estimate": _number(estimate), "ci_low": _number(low), "ci_high": _number(high)}


def _number(value: float) -> float | None:
    # JSON has no NaN or Infinity; an undefined number is null.
    value = float(value)
    return round(value, 6) if math.isfinite(value) else None


def _money(value: Decimal | float) -> str:
    amount = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    return str(amount.quantize(_CENTS, rounding=ROUND_HALF_UP))
