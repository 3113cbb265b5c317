"""Celery tasks of campaigns: take an id, call one action (enqueued by name by beat).

Scheduled sends are acknowledged late and rejected back to the queue if the worker dies:
the run resumes where it stopped (campaigns/actions/scheduling.py), so a repeat sends
nothing twice. The results tasks keep experiments' snapshots fresh (docs/campaigns.md,
"Results").
"""

from datetime import datetime

import structlog
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from campaigns import actions
from campaigns.actions.scheduling import do_run_scheduled_campaign, held_elsewhere_for, slot_of
from campaigns.models import Campaign

logger = structlog.get_logger(__name__)

# Retries carry the slot, so one that lands after the next scheduled time still
# finishes its own run rather than starting the next one.
RETRY_DELAY_SECONDS = 30


@shared_task(
    bind=True,
    name="campaigns.tasks.run_scheduled_campaign",
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=10,
    soft_time_limit=settings.CAMPAIGN_RUN_TIME_LIMIT,
    time_limit=settings.CAMPAIGN_RUN_TIME_LIMIT + 30,
)
def run_scheduled_campaign(
    self: Task, campaign_id: int, slot: str | None = None
) -> dict[str, object] | None:
    at = datetime.fromisoformat(slot) if slot else slot_of(campaign_id, timezone.now())
    slot = at.isoformat() if at else None
    try:
        run = do_run_scheduled_campaign(campaign_id, slot=at)
    except (DatabaseError, SoftTimeLimitExceeded) as exc:
        # A connection lost, a race on a shopper's run key, or a run longer than the time
        # limit: the retry resumes the same slot's run where it stopped.
        raise self.retry(exc=exc, countdown=RETRY_DELAY_SECONDS, kwargs={"slot": slot}) from exc
    if run is None:
        return None
    wait = held_elsewhere_for(run, timezone.now())
    if wait is not None:
        raise self.retry(countdown=wait + 5, kwargs={"slot": run.slot.isoformat()})
    return {"run": run.pk, "status": run.status, "sent": run.sent, "skipped": run.skipped}


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


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def follow_campaign_calendar() -> dict[str, int]:
    """Beat: start scheduled campaigns whose start has come, complete those past their end."""
    return actions.do_follow_campaign_calendar()
