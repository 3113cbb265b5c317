"""Sample ratio mismatch: did the split send shoppers where it was configured to?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats


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
