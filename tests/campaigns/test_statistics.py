"""Lift, chance to win, SRM and the results document, checked against independent computations."""

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import pytest
from scipy import stats

from campaigns.experiments.statistics import (
    AnalysisSettings,
    ArmData,
    bayesian_lift,
    conversion_moments,
    relative_lift,
    results,
    revenue_moments,
    sample_ratio_mismatch,
)

STARTED_AT = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)


def test_conversion_lift_interval_matches_fiellers_interval_for_a_ratio():
    # Fieller's theorem (Fieller 1954, J. R. Stat. Soc. B 16(2)) gives the exact-under-normality
    # interval for a ratio of two independent normal means: all theta with
    # (m_t - theta m_c)^2 <= z^2 (var_t + theta^2 var_c). For large samples the delta method
    # must land on the same interval.
    n, control_conversions, treatment_conversions = 20_000, 2000, 2200
    m_c, m_t = control_conversions / n, treatment_conversions / n
    var_c, var_t = m_c * (1 - m_c) / n, m_t * (1 - m_t) / n
    z = stats.norm.ppf(0.975)
    roots = np.sort(np.roots([m_c**2 - z**2 * var_c, -2 * m_t * m_c, m_t**2 - z**2 * var_t]))
    fieller_low, fieller_high = roots - 1

    lift = relative_lift(
        conversion_moments(n, control_conversions), conversion_moments(n, treatment_conversions)
    )

    assert float(lift.estimate) == pytest.approx(0.10)
    assert float(lift.ci_low) == pytest.approx(fieller_low, abs=0.003)
    assert float(lift.ci_high) == pytest.approx(fieller_high, abs=0.003)


def test_revenue_lift_matches_a_bootstrap_of_the_shoppers():
    rng = np.random.default_rng(11)
    n = 4000

    def shoppers(conversion_rate: float, order_scale: float) -> np.ndarray:
        converted = rng.random(n) < conversion_rate
        return np.where(converted, rng.lognormal(np.log(order_scale), 0.8, n), 0.0)

    control, treatment = shoppers(0.10, 50.0), shoppers(0.11, 55.0)
    replicates = []
    for _ in range(4):  # in chunks to keep memory small
        resample_c = control[rng.integers(0, n, (500, n))].mean(axis=1)
        resample_t = treatment[rng.integers(0, n, (500, n))].mean(axis=1)
        replicates.append(resample_t / resample_c - 1)
    bootstrap = np.concatenate(replicates)

    lift = relative_lift(
        revenue_moments(n, control.sum(), (control**2).sum()),
        revenue_moments(n, treatment.sum(), (treatment**2).sum()),
    )

    assert float(lift.estimate) == pytest.approx(treatment.mean() / control.mean() - 1)
    assert float(lift.standard_error) == pytest.approx(bootstrap.std(), rel=0.06)
    half_width = float(lift.ci_high - lift.ci_low) / 2
    low, high = np.percentile(bootstrap, [2.5, 97.5])
    assert float(lift.ci_low) == pytest.approx(low, abs=0.15 * half_width)
    assert float(lift.ci_high) == pytest.approx(high, abs=0.15 * half_width)


def test_p_values_are_uniform_and_intervals_cover_the_true_lift():
    rng = np.random.default_rng(12)
    experiments, n = 4000, 3000
    null_control = conversion_moments(n, rng.binomial(n, 0.10, experiments))
    null_treatment = conversion_moments(n, rng.binomial(n, 0.10, experiments))
    control = conversion_moments(n, rng.binomial(n, 0.10, experiments))
    treatment = conversion_moments(n, rng.binomial(n, 0.12, experiments))

    null = relative_lift(null_control, null_treatment)
    lifted = relative_lift(control, treatment)

    assert (null.p_value < 0.05).mean() == pytest.approx(0.05, abs=0.012)
    assert (null.p_value < 0.20).mean() == pytest.approx(0.20, abs=0.02)
    covered = (lifted.ci_low <= 0.20) & (lifted.ci_high >= 0.20)
    assert covered.mean() == pytest.approx(0.95, abs=0.012)


def test_chance_to_win_is_even_for_identical_arms():
    arm = conversion_moments(2000, 200)

    bayes = bayesian_lift(relative_lift(arm, arm))

    assert float(bayes.chance_to_win) == pytest.approx(0.5)
    assert float(bayes.expected_loss) > 0


def test_chance_to_win_goes_to_one_for_a_clearly_better_arm():
    bayes = bayesian_lift(
        relative_lift(conversion_moments(5000, 500), conversion_moments(5000, 750))
    )

    assert float(bayes.chance_to_win) > 0.9999
    assert float(bayes.expected_loss) < 1e-6


def test_chance_to_win_agrees_with_beta_posterior_sampling():
    # Independent check of the Gaussian approximation: sample the exact Beta posteriors of
    # both conversion rates (uniform priors) and count how often the treatment is ahead.
    rng = np.random.default_rng(13)
    control_rate = rng.beta(1 + 200, 1 + 1800, 400_000)
    treatment_rate = rng.beta(1 + 225, 1 + 1775, 400_000)

    bayes = bayesian_lift(
        relative_lift(conversion_moments(2000, 200), conversion_moments(2000, 225))
    )

    assert float(bayes.chance_to_win) == pytest.approx(
        (treatment_rate > control_rate).mean(), abs=0.025
    )


def test_srm_is_detected_on_a_skewed_split():
    srm = sample_ratio_mismatch({"control": 1000, "b": 1200}, {"control": 50, "b": 50})

    assert not srm.ok
    assert srm.p_value < 0.001


def test_srm_is_not_raised_on_a_fair_split():
    srm = sample_ratio_mismatch({"control": 1000, "b": 1040}, {"control": 50, "b": 50})

    assert srm.ok
    assert srm.p_value > 0.3


def test_srm_counts_the_holdout_against_its_share():
    expected = {"control": 45, "b": 45, "holdout": 10}

    fair = sample_ratio_mismatch({"control": 4500, "b": 4480, "holdout": 1010}, expected)
    starved_holdout = sample_ratio_mismatch({"control": 4500, "b": 4480, "holdout": 800}, expected)

    assert fair.ok
    assert not starved_holdout.ok


def test_srm_fails_when_a_group_configured_empty_gets_shoppers():
    srm = sample_ratio_mismatch(
        {"control": 500, "b": 500, "holdout": 3}, {"control": 50, "b": 50, "holdout": 0}
    )

    assert not srm.ok


def conversion_arm(key: str, exposures: int, conversions: int, average_order: float = 52.3):
    revenue = conversions * average_order
    return ArmData(key, exposures, conversions, revenue, conversions * average_order**2)


def test_results_document_has_the_agreed_shape_and_is_json():
    arms = [
        ArmData("control", 1000, 100, Decimal("5230.00"), Decimal("300000.00")),
        conversion_arm("b", 1000, 131),
    ]
    holdout = conversion_arm("holdout", 220, 17, average_order=51.76)

    document = results(
        arms,
        holdout,
        {"control": 50, "b": 50, "holdout": 10},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=3),
    )

    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert list(document) == ["goal", "srm", "variants", "holdout", "decision"]
    assert document["goal"] == "conversion"
    assert document["srm"]["ok"] is True
    control, variant_b = document["variants"]
    assert control == {
        "key": "control",
        "exposures": 1000,
        "conversions": 100,
        "revenue": "5230.00",
        "conversion_rate": 0.1,
        "lift": None,
        "chance_to_win": None,
        "p_value": None,
        "expected_loss": None,
        "sequential": None,
    }
    assert variant_b["revenue"] == "6851.30"
    assert variant_b["lift"]["estimate"] == pytest.approx(0.31)
    assert variant_b["lift"]["ci_low"] < 0.31 < variant_b["lift"]["ci_high"]
    assert 0.5 < variant_b["chance_to_win"] < 1
    assert 0 < variant_b["p_value"] < 1
    assert set(variant_b["sequential"]) == {"ci_low", "ci_high", "p_value", "conclusive"}
    assert document["holdout"]["revenue"] == "879.92"
    assert set(document["holdout"]) == {
        "exposures",
        "conversions",
        "revenue",
        "incremental_conversions",
        "incremental_revenue",
        "lift",
    }
    assert document["decision"] == {
        "status": "collecting",
        "winner": None,
        "method": "guard_min_runtime",
    }


def test_holdout_incrementality_counts_what_the_treated_did_beyond_the_holdout_rate():
    arms = [conversion_arm("control", 1000, 100, 50.0), conversion_arm("b", 1000, 140, 50.0)]
    holdout = conversion_arm("holdout", 200, 15, 40.0)

    document = results(
        arms,
        holdout,
        {"control": 50, "b": 50, "holdout": 10},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=14),
    )

    # Treated: 2,000 shoppers, 240 orders, 12,000.00. At the holdout's 7.5% and 3.00 per
    # shopper they would have placed 150 orders worth 6,000.00.
    assert document["holdout"]["incremental_conversions"] == pytest.approx(90)
    assert document["holdout"]["incremental_revenue"] == "6000.00"
    lift = document["holdout"]["lift"]
    assert lift["estimate"] == pytest.approx(0.12 / 0.075 - 1)
    assert lift["ci_low"] < lift["estimate"] < lift["ci_high"]


def test_results_without_a_holdout_report_none():
    arms = [conversion_arm("control", 500, 50), conversion_arm("b", 500, 55)]

    document = results(
        arms, None, {"control": 50, "b": 50}, "control", STARTED_AT, STARTED_AT + timedelta(days=1)
    )

    assert document["holdout"] is None


def test_revenue_goal_reports_lift_on_revenue_per_shopper():
    arms = [
        conversion_arm("control", 3000, 300, average_order=50.0),
        conversion_arm("b", 3000, 300, average_order=60.0),
    ]

    document = results(
        arms,
        None,
        {"control": 50, "b": 50},
        "control",
        STARTED_AT,
        STARTED_AT + timedelta(days=10),
        AnalysisSettings(goal="revenue"),
    )

    assert document["goal"] == "revenue"
    assert document["variants"][1]["lift"]["estimate"] == pytest.approx(0.2)


def test_an_arm_without_data_yet_has_null_numbers_not_nan():
    arms = [conversion_arm("control", 0, 0), conversion_arm("b", 0, 0)]

    document = results(arms, None, {"control": 50, "b": 50}, "control", STARTED_AT, STARTED_AT)

    json.dumps(document, allow_nan=False)
    assert document["variants"][1]["lift"] is None
    assert document["variants"][1]["conversion_rate"] is None
    assert document["decision"]["status"] == "collecting"


@pytest.mark.parametrize(
    ("weights", "control_key", "field"),
    [
        ({"control": 50, "b": 50}, "a", "control_key"),
        ({"control": 100}, "control", "weights"),
    ],
)
def test_results_refuse_inputs_that_do_not_describe_the_arms(weights, control_key, field):
    arms = [conversion_arm("control", 10, 1), conversion_arm("b", 10, 1)]

    with pytest.raises(ValueError, match=f"^{field}"):
        results(arms, None, weights, control_key, STARTED_AT, STARTED_AT)
