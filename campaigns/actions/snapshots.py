"""Results snapshots: computed by beat every ``RESULTS_REFRESH_MINUTES`` and on demand,
stored one row per computation, served newest first (docs/campaigns.md, "Results").

After each computation of a running campaign, the allocation follows it: a bandit campaign
gets its new Thompson split, an auto-promoting one promotes a conclusive winner
(``campaigns.actions.allocation``).
"""

import time
from datetime import datetime
from typing import Any

import structlog
from django.db import transaction
from django.utils import timezone

from campaigns.actions.allocation import do_apply_allocation
from campaigns.actions.results import NoExperiment, campaign_results
from campaigns.metrics import RESULTS_FAILED, RESULTS_REFRESHED, RESULTS_SECONDS
from campaigns.models import Campaign, CampaignStatus, ResultSnapshot

logger = structlog.get_logger(__name__)

FROZEN_STATUSES = frozenset({CampaignStatus.COMPLETED, CampaignStatus.ARCHIVED})
# Beat refreshes what can still gain exposures or conversions.
LIVE_STATUSES = frozenset({CampaignStatus.RUNNING, CampaignStatus.PAUSED})
# The lift chart draws at most this many points (evenly thinned), however long the test ran.
MAX_SERIES_POINTS = 200


def do_refresh_results(
    campaign: Campaign, trigger: str, now: datetime | None = None
) -> ResultSnapshot:
    """Compute and store a snapshot now, then let the allocation follow it.

    A completed campaign's results are frozen: its snapshot repeats the frozen document.
    Raises ``NoExperiment`` for a campaign without variants.
    """
    now = now or timezone.now()
    started = time.perf_counter()
    try:
        document = campaign_results(campaign, now)
    except NoExperiment:
        raise
    except Exception:
        RESULTS_FAILED.labels(trigger).inc()
        logger.exception("campaign_results_failed", campaign_id=campaign.pk, trigger=trigger)
        raise
    RESULTS_SECONDS.observe(time.perf_counter() - started)
    with transaction.atomic():
        snapshot = ResultSnapshot.objects.create(
            campaign=campaign, computed_at=now, trigger=trigger, document=document
        )
        if campaign.status == CampaignStatus.RUNNING:
            do_apply_allocation(campaign, document, now)
    RESULTS_REFRESHED.labels(trigger).inc()
    logger.info(
        "campaign_results_refreshed",
        campaign_id=campaign.pk,
        trigger=trigger,
        status=document["decision"]["status"],
        exposures=sum(v["exposures"] for v in document["variants"]),
    )
    return snapshot


def latest_results(campaign: Campaign, now: datetime | None = None) -> dict[str, Any]:
    """What ``GET /results`` answers: the frozen document of a finished campaign, else the
    newest snapshot, else one computed (and stored) now."""
    if not campaign.has_experiment:
        raise NoExperiment(f"Campaign '{campaign.name}' has no variants: nothing to compare.")
    if campaign.status in FROZEN_STATUSES and campaign.results is not None:
        return dict(campaign.results)
    snapshot = campaign.snapshots.order_by("-computed_at", "-id").first()
    if snapshot is None:
        snapshot = do_refresh_results(campaign, "first_read", now)
    return dict(snapshot.document)


def live_experiment_ids() -> list[int]:
    """Campaigns beat refreshes: running or paused, with variants."""
    return list(
        Campaign.objects.filter(status__in=LIVE_STATUSES)
        .exclude(variants=[])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def lift_series(campaign: Campaign) -> list[dict[str, Any]]:
    """The cumulative lift of each arm over time, from the snapshots (oldest first):
    ``[{"at": iso, "arms": {key: {"estimate", "ci_low", "ci_high"}}}]``."""
    snapshots = list(
        campaign.snapshots.order_by("computed_at", "id").values_list("computed_at", "document")
    )
    if len(snapshots) > MAX_SERIES_POINTS:
        step = len(snapshots) / MAX_SERIES_POINTS
        snapshots = [snapshots[int(i * step)] for i in range(MAX_SERIES_POINTS - 1)] + [
            snapshots[-1]
        ]
    series = []
    for computed_at, document in snapshots:
        arms = {
            variant["key"]: variant["lift"]
            for variant in document.get("variants", [])
            if variant.get("lift") is not None
        }
        series.append({"at": computed_at.isoformat(), "arms": arms})
    return series
