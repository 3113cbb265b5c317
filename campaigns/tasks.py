"""Celery tasks of campaigns: take an id, call one action (enqueued by name by beat).

Acknowledged late and rejected back to the queue if the worker dies: the run resumes
where it stopped (campaigns/actions/scheduling.py), so a repeat sends nothing twice.
"""

from datetime import datetime

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from campaigns.actions.scheduling import do_run_scheduled_campaign, held_elsewhere_for, slot_of

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
