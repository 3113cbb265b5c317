"""An experiment's results as the API and the admin show them: every arm against control,
the SRM check, the verdict and the holdout's incrementality, as a JSON-ready dict."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from campaigns.experiments.assignment import HOLDOUT
from campaigns.experiments.statistics.decision import (
    AnalysisSettings,
    ArmComparison,
    Goal,
    compare_arm,
    decide,
)
from campaigns.experiments.statistics.frequentist import (
    Lift,
    Moments,
    conversion_moments,
    relative_lift,
    revenue_moments,
)
from campaigns.experiments.statistics.srm import sample_ratio_mismatch

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
