"""Celery tasks of campaigns: take an id, call one action (enqueued by name by beat).

Acknowledged late and rejected back to the queue if the worker dies: the run resumes
where it stopped (campaigns/actions/scheduling.py), so a repeat sends nothing twice.
"""

from celery import shared_task
from django.conf import settings

from campaigns.actions.scheduling import do_run_scheduled_campaign


@shared_task(
    name="campaigns.tasks.run_scheduled_campaign",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=settings.CAMPAIGN_RUN_TIME_LIMIT,
    time_limit=settings.CAMPAIGN_RUN_TIME_LIMIT + 30,
)
def run_scheduled_campaign(campaign_id: int) -> dict[str, object] | None:
    run = do_run_scheduled_campaign(campaign_id)
    if run is None:
        return None
    return {"run": run.pk, "status": run.status, "sent": run.sent, "skipped": run.skipped}
