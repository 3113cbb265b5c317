"""What an experiment's numbers say: lift, chance to win, sequential verdict, SRM, holdout.

See docs/campaigns.md ("How the statistics work") for the full write-up with formulas.

- ``frequentist``: moments of a per-shopper metric and the fixed-horizon relative lift;
- ``bayesian``: chance to win and expected loss;
- ``sequential``: the always-valid confidence sequence that decides;
- ``srm``: the sample ratio mismatch check;
- ``decision``: one arm against control by every method, and the verdict;
- ``report``: the results dict, with the holdout's incrementality.

The names below are the public API; callers import them from this package.
"""

from campaigns.experiments.statistics.bayesian import BayesianLift, bayesian_lift
from campaigns.experiments.statistics.decision import (
    AnalysisSettings,
    ArmComparison,
    Decision,
    Goal,
    Status,
    compare_arm,
    decide,
)
from campaigns.experiments.statistics.frequentist import (
    FloatArray,
    Lift,
    Moments,
    conversion_moments,
    relative_lift,
    revenue_moments,
)
from campaigns.experiments.statistics.report import (
    ArmData,
    Incrementality,
    holdout_incrementality,
    results,
)
from campaigns.experiments.statistics.sequential import SequentialLift, sequential_lift
from campaigns.experiments.statistics.srm import Srm, sample_ratio_mismatch

__all__ = [
    "AnalysisSettings",
    "ArmComparison",
    "ArmData",
    "BayesianLift",
    "Decision",
    "FloatArray",
    "Goal",
    "Incrementality",
    "Lift",
    "Moments",
    "SequentialLift",
    "Srm",
    "Status",
    "bayesian_lift",
    "compare_arm",
    "conversion_moments",
    "decide",
    "holdout_incrementality",
    "relative_lift",
    "results",
    "revenue_moments",
    "sample_ratio_mismatch",
    "sequential_lift",
]
