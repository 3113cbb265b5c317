"""Sticky assignment and bandit weights: pure functions, no database."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from campaigns.experiments.assignment import (
    HOLDOUT,
    Arm,
    InvalidAllocation,
    assign,
    bucket,
    thompson_weights,
    validate_allocation,
)
from campaigns.experiments.statistics import ArmData

PROJECT_ROOT = Path(__file__).resolve().parents[2]
THREE_ARMS = [Arm("control", 20), Arm("discount", 30), Arm("free_shipping", 50)]


def shoppers(count: int) -> list[str]:
    return [f"shopper-{number}" for number in range(count)]


def test_assignment_is_identical_in_another_process():
    keys = shoppers(3000)
    in_process = [assign("spring-sale", key, THREE_ARMS, 10) for key in keys]
    script = (
        "import json, sys\n"
        "from campaigns.experiments.assignment import Arm, assign\n"
        "arms = [Arm('control', 20), Arm('discount', 30), Arm('free_shipping', 50)]\n"
        "keys = [f'shopper-{n}' for n in range(3000)]\n"
        "print(json.dumps([assign('spring-sale', k, arms, 10) for k in keys]))\n"
    )
    # A different hash seed: Python's own hash() would give another answer in this process.
    env = {**os.environ, "PYTHONHASHSEED": "12345"}

    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert json.loads(completed.stdout) == in_process
    assert set(in_process) == {"control", "discount", "free_shipping", HOLDOUT}


def test_shares_follow_the_configured_weights():
    keys = shoppers(40_000)

    assigned = [assign("spring-sale", key, THREE_ARMS, 10) for key in keys]

    holdout_share = assigned.count(HOLDOUT) / len(keys)
    treated = [arm for arm in assigned if arm != HOLDOUT]
    assert holdout_share == pytest.approx(0.10, abs=0.01)
    for arm in THREE_ARMS:
        assert treated.count(arm.key) / len(treated) == pytest.approx(arm.weight / 100, abs=0.01)


def test_bucket_is_uniform_and_below_one():
    positions = np.array([bucket("spring-sale", key) for key in shoppers(20_000)])

    assert positions.min() >= 0.0
    assert positions.max() < 1.0
    # Ten equal bins of 2,000 expected each.
    counts, _ = np.histogram(positions, bins=10, range=(0.0, 1.0))
    assert np.all(np.abs(counts - 2000) < 200)


def test_changing_the_holdout_share_leaves_treated_shoppers_in_their_arm():
    keys = shoppers(10_000)
    before = {key: assign("spring-sale", key, THREE_ARMS, 5) for key in keys}

    after = {key: assign("spring-sale", key, THREE_ARMS, 20) for key in keys}

    still_treated = [key for key in keys if HOLDOUT not in (before[key], after[key])]
    assert len(still_treated) > 7000
    assert all(before[key] == after[key] for key in still_treated)
    # A larger holdout only pulls shoppers in; nobody held out is released into an arm.
    assert all(after[key] == HOLDOUT for key in keys if before[key] == HOLDOUT)


def test_reweighting_moves_only_shoppers_in_the_range_that_changes_owner():
    keys = shoppers(10_000)
    before = {key: assign("spring-sale", key, [Arm("a", 50), Arm("b", 50)], 10) for key in keys}

    after = {key: assign("spring-sale", key, [Arm("a", 40), Arm("b", 60)], 10) for key in keys}

    moved = [key for key in keys if before[key] != after[key]]
    assert {(before[key], after[key]) for key in moved} == {("a", "b")}
    # The range [0.40, 0.50) of the treated 90%: about 9% of everyone.
    assert len(moved) / len(keys) == pytest.approx(0.09, abs=0.01)


def test_a_different_experiment_shuffles_shoppers_independently():
    keys = shoppers(10_000)
    halves = [Arm("a", 50), Arm("b", 50)]

    first = [assign("spring-sale", key, halves, 0) for key in keys]
    second = [assign("summer-sale", key, halves, 0) for key in keys]

    agreement = sum(a == b for a, b in zip(first, second, strict=True)) / len(keys)
    assert agreement == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize(
    ("arms", "holdout", "field"),
    [
        ([], 0, "arms"),
        ([Arm("a", 50), Arm("b", 40)], 0, "arms"),
        ([Arm("a", 100), Arm("b", 0)], 0, "arms[1].weight"),
        ([Arm("a", 150), Arm("b", -50)], 0, "arms[1].weight"),
        ([Arm("a", 50), Arm("a", 50)], 0, "arms[1].key"),
        ([Arm("", 100)], 0, "arms[0].key"),
        ([Arm("holdout", 100)], 0, "arms[0].key"),
        ([Arm("a", 100)], 51, "holdout_percent"),
        ([Arm("a", 100)], -1, "holdout_percent"),
    ],
)
def test_invalid_allocation_names_the_field(arms, holdout, field):
    with pytest.raises(ValueError, match=r"^" + re.escape(field)) as caught:
        validate_allocation(arms, holdout)

    assert isinstance(caught.value, InvalidAllocation)
    assert caught.value.field == field


def test_weights_that_sum_to_100_up_to_float_rounding_are_accepted():
    validate_allocation([Arm("a", 100 / 3), Arm("b", 100 / 3), Arm("c", 100 / 3)], 50)


def test_thompson_weights_respect_the_floor_and_favour_the_better_arm():
    arms = [
        ArmData("control", 2000, 200, 0.0, 0.0),
        ArmData("discount", 2000, 260, 0.0, 0.0),
        ArmData("free_shipping", 2000, 190, 0.0, 0.0),
    ]

    weights = thompson_weights(arms, floor=5, draws=20_000, rng=np.random.default_rng(7))

    assert sum(weights.values()) == pytest.approx(100, abs=1e-9)
    assert min(weights.values()) >= 5
    assert max(weights, key=weights.__getitem__) == "discount"
    assert weights["discount"] > 85
    validate_allocation([Arm(key, weight) for key, weight in weights.items()], 0)


def test_thompson_weights_split_evenly_without_data():
    arms = [ArmData(key, 0, 0, 0.0, 0.0) for key in ("a", "b", "c", "d")]

    weights = thompson_weights(arms, floor=10, draws=40_000, rng=np.random.default_rng(7))

    for weight in weights.values():
        assert weight == pytest.approx(25, abs=1)


def test_thompson_weights_refuse_a_floor_that_leaves_nothing_to_share():
    arms = [ArmData(key, 10, 1, 0.0, 0.0) for key in ("a", "b", "c")]

    with pytest.raises(ValueError, match=r"^floor"):
        thompson_weights(arms, floor=40, draws=100, rng=np.random.default_rng(7))
