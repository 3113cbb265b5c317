"""An experiment's results from its rows: exposures per arm, and conversions attributed to
them (a checkout of the shopper's cart within the attribution window after exposure)."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection

from campaigns.experiments.assignment import HOLDOUT
from campaigns.experiments.statistics import AnalysisSettings, ArmData, results
from campaigns.models import Campaign, CampaignStatus, Exposure
from interventions.models import Cart


class NoExperiment(Exception):
    """The campaign has no variants: there is nothing to compare."""


# Per arm, in the database: a shopper converts when a cart of theirs checked out within the
# window after their exposure (at most once), and their revenue is all such carts. Python
# sees one row per arm, so memory does not grow with the exposures (1 M exposures: see
# docs/benchmarks.md); iterating them in Python took 45-70 s and 180 MiB there.
ARM_TOTALS_SQL = """
SELECT e.arm,
       COUNT(*) AS exposures,
       COUNT(*) FILTER (WHERE w.carts > 0) AS conversions,
       COALESCE(SUM(w.revenue), 0) AS revenue_sum,
       COALESCE(SUM(w.revenue * w.revenue), 0) AS revenue_sum_squares
FROM {exposure} e
LEFT JOIN LATERAL (
    SELECT COUNT(*) AS carts, SUM(COALESCE(c.conversion_value, c.value)) AS revenue
    FROM {cart} c
    WHERE c.shopper_id = e.shopper_id
      AND c.converted_at IS NOT NULL
      AND c.converted_at >= e.exposed_at
      AND c.converted_at <= e.exposed_at + make_interval(hours => %(hours)s)
) w ON TRUE
WHERE e.campaign_id = %(campaign)s
GROUP BY e.arm
ORDER BY e.arm
"""


def arm_data(campaign: Campaign) -> dict[str, ArmData]:
    """Per arm (and ``"holdout"``): exposures, converted shoppers, revenue, revenue²."""
    sql = ARM_TOTALS_SQL.format(exposure=Exposure._meta.db_table, cart=Cart._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(sql, {"hours": campaign.attribution_window_hours, "campaign": campaign.pk})
        rows = cursor.fetchall()
    return {
        arm: ArmData(arm, exposures, conversions, Decimal(revenue_sum), Decimal(squares))
        for arm, exposures, conversions, revenue_sum, squares in rows
    }


def analysis_settings() -> AnalysisSettings:
    """The guards before any verdict (and so before any automatic promotion), from settings."""
    return AnalysisSettings(
        min_exposures_per_arm=settings.EXPERIMENT_MIN_EXPOSURES_PER_ARM,
        min_runtime=timedelta(hours=settings.EXPERIMENT_MIN_RUNTIME_HOURS),
    )


def split_in_force(campaign: Campaign, treated_exposures: int) -> dict[str, float]:
    """The arms' weights averaged over the treated exposures each split received.

    While the split never changed this is the variants' weights. After bandit re-weighting, a
    promotion or its undo, each ``AllocationChange`` holds the split from then on and how many
    treated shoppers came before it, so the sample-ratio check expects what was configured
    when each shopper arrived rather than flagging the change itself as a mismatch.
    """
    configured = campaign.configured_weights()
    changes = list(campaign.allocations.all())
    if not changes or treated_exposures <= 0:
        return configured
    periods: list[tuple[int, dict[str, Any]]] = [(0, configured)]
    periods += [(c.treated_exposures_before, c.weights) for c in changes]
    averaged = dict.fromkeys(configured, 0.0)
    for index, (start, weights) in enumerate(periods):
        end = periods[index + 1][0] if index + 1 < len(periods) else treated_exposures
        shoppers = max(min(end, treated_exposures) - start, 0)
        if set(weights) != set(configured):
            # A split recorded for arms since edited away: the marketer's split stands in.
            weights = configured
        for key in configured:
            averaged[key] += shoppers * float(weights[key])
    total = sum(averaged.values())
    if total <= 0:
        return configured
    # Rescaled to sum to exactly 100, as results() expects of arm weights.
    return {key: 100.0 * value / total for key, value in averaged.items()}


def campaign_results(campaign: Campaign, now: datetime) -> dict[str, Any]:
    """The results document (docs/campaigns.md); a completed campaign's frozen one."""
    if not campaign.has_experiment:
        raise NoExperiment(f"Campaign '{campaign.name}' has no variants: nothing to compare.")
    if campaign.results is not None and campaign.status in (
        CampaignStatus.COMPLETED,
        CampaignStatus.ARCHIVED,
    ):
        return dict(campaign.results)
    observed = arm_data(campaign)
    keys = [variant["key"] for variant in campaign.variants]
    arms = [observed.get(key) or ArmData(key, 0, 0, Decimal(0), Decimal(0)) for key in keys]
    # An arm removed while the campaign was paused keeps its exposures; the statistics
    # compare today's arms only, so those are reported apart and every row is accounted for.
    retired = {key: data.exposures for key, data in observed.items() if key not in {*keys, HOLDOUT}}
    holdout = observed.get(HOLDOUT)
    if holdout is None and campaign.holdout_percent:
        holdout = ArmData(HOLDOUT, 0, 0, Decimal(0), Decimal(0))
    weights = split_in_force(campaign, sum(arm.exposures for arm in arms))
    if campaign.holdout_percent or holdout is not None:
        weights[HOLDOUT] = float(campaign.holdout_percent)
    started_at = campaign.launched_at or campaign.created_at
    document = results(arms, holdout, weights, keys[0], started_at, now, analysis_settings())
    return {
        "campaign": campaign.pk,
        "status": campaign.status,
        "computed_at": now.isoformat(),
        "started_at": started_at.isoformat(),
        "attribution_window_hours": campaign.attribution_window_hours,
        "control": keys[0],
        "retired_arms": retired,
        **document,
    }
