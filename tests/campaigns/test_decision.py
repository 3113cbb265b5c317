"""The verdict rules, as a table over plain comparisons, and end to end through results()."""

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.experiments.statistics import (
    AnalysisSettings,
    ArmComparison,
    ArmData,
    Decision,
    Srm,
    decide,
    results,
)

SETTINGS = AnalysisSettings(
    min_exposures_per_arm=100,
    min_runtime=timedelta(days=7),
    max_runtime=timedelta(days=28),
    max_exposures_per_arm=50_000,
    practical_threshold=0.02,
)
FAIR = Srm(p_value=0.6, ok=True)
PLENTY = {"control": 5000, "b": 5000, "c": 5000}
TWO_WEEKS = timedelta(days=14)


def arm(key: str, seq_low: float, seq_high: float, lift: float | None = None) -> ArmComparison:
    estimate = (seq_low + seq_high) / 2 if lift is None else lift
    conclusive = seq_low > 0 or seq_high < 0
    return ArmComparison(
        key=key,
        lift=estimate,
        ci_low=seq_low / 2,
        ci_high=seq_high / 2,
        p_value=0.01 if conclusive else 0.4,
        chance_to_win=0.99 if estimate > 0 else 0.2,
        expected_loss=0.001,
        sequential_ci_low=seq_low,
        sequential_ci_high=seq_high,
        sequential_p_value=0.01 if conclusive else 0.5,
        conclusive=conclusive,
    )


@pytest.mark.parametrize(
    ("comparisons", "srm", "exposures", "runtime", "expected"),
    [
        pytest.param(
            [arm("b", 0.10, 0.50), arm("c", -0.1, 0.1)],
            Srm(p_value=0.0001, ok=False),
            PLENTY,
            TWO_WEEKS,
            Decision("srm_failed", None, "srm_chi_square"),
            id="srm-blocks-a-clear-winner",
        ),
        pytest.param(
            [arm("b", 0.10, 0.50), arm("c", -0.1, 0.1)],
            FAIR,
            {"control": 5000, "b": 5000, "c": 99},
            TWO_WEEKS,
            Decision("collecting", None, "guard_min_exposures"),
            id="too-few-shoppers-in-one-arm",
        ),
        pytest.param(
            [arm("b", 0.10, 0.50), arm("c", -0.1, 0.1)],
            FAIR,
            PLENTY,
            timedelta(days=6, hours=23),
            Decision("collecting", None, "guard_min_runtime"),
            id="too-early",
        ),
        pytest.param(
            [arm("b", 0.01, 0.40, lift=0.2), arm("c", 0.05, 0.30, lift=0.15)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("significant", "b", "sequential_confidence_sequence"),
            id="largest-conclusive-lift-wins",
        ),
        pytest.param(
            [arm("b", 0.01, 0.40), arm("c", -0.5, -0.1)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("significant", "b", "sequential_confidence_sequence"),
            id="winner-despite-a-losing-arm",
        ),
        pytest.param(
            [arm("b", -0.4, -0.05), arm("c", -0.5, -0.1)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("significant", "control", "sequential_confidence_sequence"),
            id="control-beats-every-arm",
        ),
        pytest.param(
            [arm("b", -0.4, -0.05), arm("c", -0.05, 0.2)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("collecting", None, "sequential_confidence_sequence"),
            id="one-loser-one-open",
        ),
        pytest.param(
            [arm("b", -0.015, 0.019), arm("c", -0.01, 0.01)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("no_difference", None, "practical_equivalence"),
            id="every-lift-too-small-to-matter",
        ),
        pytest.param(
            [arm("b", -0.015, 0.025), arm("c", -0.01, 0.01)],
            FAIR,
            PLENTY,
            TWO_WEEKS,
            Decision("collecting", None, "sequential_confidence_sequence"),
            id="one-arm-could-still-matter",
        ),
        pytest.param(
            [arm("b", -0.05, 0.2)],
            FAIR,
            {"control": 5000, "b": 5000},
            timedelta(days=28),
            Decision("no_difference", None, "max_runtime"),
            id="ran-out-of-time",
        ),
        pytest.param(
            [arm("b", -0.05, 0.2)],
            FAIR,
            {"control": 50_000, "b": 50_001},
            TWO_WEEKS,
            Decision("no_difference", None, "max_exposures"),
            id="ran-out-of-sample",
        ),
    ],
)
def test_decision_rules(comparisons, srm, exposures, runtime, expected):
    assert decide("control", exposures, comparisons, srm, runtime, SETTINGS) == expected


STARTED_AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def conversions_only(key: str, exposures: int, conversions: int) -> ArmData:
    return ArmData(key, exposures, conversions, conversions * 40.0, conversions * 1600.0)


def test_a_clearly_better_arm_wins_end_to_end():
    arms = [conversions_only("control", 6000, 600), conversions_only("b", 6000, 840)]

    document = results(
        arms,
        None,
        {"control": 50, "b": 50},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=10),
        SETTINGS,
    )

    assert document["decision"] == {
        "status": "significant",
        "winner": "b",
        "method": "sequential_confidence_sequence",
    }
    assert document["variants"][1]["sequential"]["conclusive"] is True


def test_a_broken_split_blocks_the_winner_end_to_end():
    arms = [conversions_only("control", 6000, 600), conversions_only("b", 7000, 980)]

    document = results(
        arms,
        None,
        {"control": 50, "b": 50},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=10),
        SETTINGS,
    )

    assert document["srm"]["ok"] is False
    assert document["decision"]["status"] == "srm_failed"
    assert document["decision"]["winner"] is None


def test_identical_arms_at_large_sample_show_no_difference_end_to_end():
    arms = [conversions_only("control", 400_000, 40_000), conversions_only("b", 400_000, 40_000)]

    document = results(
        arms,
        None,
        {"control": 50, "b": 50},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=10),
        AnalysisSettings(practical_threshold=0.05),
    )

    assert document["decision"] == {
        "status": "no_difference",
        "winner": None,
        "method": "practical_equivalence",
    }
