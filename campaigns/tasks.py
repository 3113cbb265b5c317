"""Celery tasks for experiments: take an id, call one action (docs/campaigns.md, "Results")."""

import structlog
from celery import shared_task

from campaigns import actions
from campaigns.models import Campaign

logger = structlog.get_logger(__name__)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def refresh_all_campaign_results() -> int:
    """Beat: one task per live experiment, so one slow campaign does not hold up the rest."""
    campaign_ids = actions.live_experiment_ids()
    for campaign_id in campaign_ids:
        refresh_campaign_results.apply_async(args=(campaign_id,), queue="scheduled", expires=600)
    return len(campaign_ids)


@shared_task(acks_late=True, time_limit=300, soft_time_limit=240)
def refresh_campaign_results(campaign_id: int, trigger: str = "beat") -> str:
    """A repeat only stores one more snapshot; a promotion happens at most once (locked)."""
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or not campaign.has_experiment:
        logger.info("campaign_results_skipped", campaign_id=campaign_id)
        return "skipped"
    snapshot = actions.do_refresh_results(campaign, trigger)
    return str(snapshot.document["decision"]["status"])
