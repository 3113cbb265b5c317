"""Deterministic, sticky assignment of shoppers to experiment arms, and bandit re-weighting.

See docs/campaigns.md ("How the statistics work") for the full write-up.

Every shopper gets two independent positions in [0, 1), each a hash of a salt, the
experiment key and the shopper key:

* the holdout position decides holdout or treated (holdout when below ``holdout_percent/100``);
* the arm position picks the arm by cumulative weight ranges (arm 1 owns
  ``[0, w1/100)``, arm 2 ``[w1/100, (w1+w2)/100)``, ...).

Because the two positions are independent, changing the holdout share does not move any
treated shopper to another arm (it only moves shoppers between holdout and treated, and
raising it only pulls shoppers into the holdout), and re-weighting the arms does not move
anyone in or out of the holdout.

Re-weighting moves exactly the shoppers whose arm position falls in a part of a range that
changes owner: going from a 50/50 split to 40/60 moves the shoppers in ``[0.4, 0.5)`` from
the first arm to the second and nobody else. With three or more arms, changing an early
weight shifts every later boundary, so shoppers near each shifted boundary move. Callers
persist a shopper's first assignment (the exposure), so a shopper already exposed keeps
their arm whatever the weights become; re-weighting only changes where new shoppers land.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

HOLDOUT = "holdout"
MAX_HOLDOUT_PERCENT = 50.0
# Weights come from forms and bandit arithmetic; float sums of e.g. 33.3 + 33.3 + 33.4 are
# not exactly 100.
WEIGHT_SUM_TOLERANCE = 1e-9

_ARM_SALT = "arm"
_HOLDOUT_SALT = "holdout"


@dataclass(frozen=True)
class Arm:
    key: str
    weight: float  # percent of the treated shoppers; the weights of an experiment sum to 100


class InvalidAllocation(ValueError):
    """An arm list or holdout share that cannot be used; ``field`` names the offending input."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class ConversionCounts(Protocol):
    """What the bandit needs to know about an arm (``statistics.ArmData`` has it)."""

    @property
    def key(self) -> str: ...

    @property
    def exposures(self) -> int: ...

    @property
    def conversions(self) -> int: ...


def bucket(experiment_key: str, shopper_key: str, *, salt: str = _ARM_SALT) -> float:
    """A position in [0, 1) that is the same in every process, on every machine, forever.

    sha256, not Python's ``hash()``: the latter is randomised per process (PYTHONHASHSEED),
    so an assignment computed by a web worker would differ from the one a Celery worker gets.
    """
    # NUL cannot appear in keys typed by people or generated ids, so the parts cannot run
    # into each other ("ab"+"c" vs "a"+"bc").
    digest = hashlib.sha256(f"{salt}\0{experiment_key}\0{shopper_key}".encode()).digest()
    # 53 bits: exactly representable as a float, so the result is strictly below 1.
    return (int.from_bytes(digest[:8], "big") >> 11) / float(1 << 53)


def validate_allocation(arms: Sequence[Arm], holdout_percent: float) -> None:
    """Raise ``InvalidAllocation`` (a ``ValueError``) naming the first problem found."""
    if not arms:
        raise InvalidAllocation("arms", "at least one arm is required")
    seen: set[str] = set()
    for index, arm in enumerate(arms):
        if not arm.key or not arm.key.strip():
            raise InvalidAllocation(f"arms[{index}].key", "must not be empty")
        if arm.key == HOLDOUT:
            raise InvalidAllocation(
                f"arms[{index}].key", f"'{HOLDOUT}' is reserved for the holdout group"
            )
        if arm.key in seen:
            raise InvalidAllocation(f"arms[{index}].key", f"'{arm.key}' is used by another arm")
        seen.add(arm.key)
        if not math.isfinite(arm.weight) or arm.weight <= 0:
            raise InvalidAllocation(f"arms[{index}].weight", "must be a positive number")
    total = math.fsum(arm.weight for arm in arms)
    if abs(total - 100.0) > WEIGHT_SUM_TOLERANCE:
        raise InvalidAllocation("arms", f"weights must sum to 100, they sum to {total:g}")
    if not math.isfinite(holdout_percent) or not 0.0 <= holdout_percent <= MAX_HOLDOUT_PERCENT:
        raise InvalidAllocation("holdout_percent", f"must be between 0 and {MAX_HOLDOUT_PERCENT:g}")


def assign(
    experiment_key: str, shopper_key: str, arms: Sequence[Arm], holdout_percent: float
) -> str:
    """The arm key for this shopper, or ``"holdout"``."""
    validate_allocation(arms, holdout_percent)
    if bucket(experiment_key, shopper_key, salt=_HOLDOUT_SALT) < holdout_percent / 100.0:
        return HOLDOUT
    position = bucket(experiment_key, shopper_key, salt=_ARM_SALT) * 100.0
    upper = 0.0
    for arm in arms:
        upper += arm.weight
        if position < upper:
            return arm.key
    # Rounding can leave the last boundary a hair under 100; that sliver belongs to the last arm.
    return arms[-1].key


def thompson_weights(
    arms_stats: Sequence[ConversionCounts],
    floor: float,
    draws: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Bandit weights (percent, summing to 100) by Thompson sampling on conversion.

    Each arm's conversion rate has a Beta(1 + conversions, 1 + non-conversions) posterior
    (uniform prior). The share of ``draws`` joint posterior samples in which an arm is best
    estimates the probability that it is best; each arm gets ``floor`` percent and the rest
    is split by that probability, so no arm is starved and the data keeps coming for all.
    """
    if not arms_stats:
        raise InvalidAllocation("arms", "at least one arm is required")
    if draws < 1:
        raise InvalidAllocation("draws", "must be at least 1")
    if not 0.0 < floor <= 100.0 / len(arms_stats):
        raise InvalidAllocation(
            "floor", f"must be above 0 and at most {100.0 / len(arms_stats):g} for this many arms"
        )
    for index, arm in enumerate(arms_stats):
        if arm.exposures < 0 or not 0 <= arm.conversions <= arm.exposures:
            raise InvalidAllocation(f"arms[{index}]", "conversions must be between 0 and exposures")
    successes = np.array([arm.conversions for arm in arms_stats], dtype=float)
    failures = np.array([arm.exposures - arm.conversions for arm in arms_stats], dtype=float)
    samples = rng.beta(
        1.0 + successes[:, None], 1.0 + failures[:, None], size=(len(arms_stats), draws)
    )
    wins = np.bincount(samples.argmax(axis=0), minlength=len(arms_stats))
    probability_best = wins / draws
    spread = 100.0 - floor * len(arms_stats)
    return {
        arm.key: floor + spread * float(share)
        for arm, share in zip(arms_stats, probability_best, strict=True)
    }
