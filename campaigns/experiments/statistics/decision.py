"""One arm against control by every method, and the experiment's verdict from them
(docs/campaigns.md, "Decision rule")."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

from campaigns.experiments.statistics.bayesian import bayesian_lift
from campaigns.experiments.statistics.frequentist import Moments, relative_lift
from campaigns.experiments.statistics.sequential import sequential_lift
from campaigns.experiments.statistics.srm import Srm

Goal = Literal["conversion", "revenue"]
Status = Literal["collecting", "significant", "no_difference", "srm_failed"]


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
