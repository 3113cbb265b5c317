"""Celery tasks: take an id, call one action, classify errors for retry.

All tasks are idempotent (actions claim rows with conditional updates), acknowledged
late and rejected back to the queue if the worker dies, so a lost worker never loses
work; see docs/delivery.md.
"""

from typing import Any

import structlog
from celery import Task, shared_task
from django.conf import settings

from interventions import actions

logger = structlog.get_logger(__name__)


@shared_task(
    bind=True,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=settings.DELIVERY_MAX_RETRIES,
    soft_time_limit=settings.DELIVERY_SOFT_TIME_LIMIT,
    time_limit=settings.DELIVERY_SOFT_TIME_LIMIT + 15,
)
def deliver_intervention(self: Task, intervention_id: str) -> str:
    try:
        return actions.do_deliver(intervention_id)
    except actions.TransientDeliveryError as exc:
        if self.request.retries >= (self.max_retries or 0):
            actions.do_give_up(intervention_id, str(exc))
            return "gave_up"
        countdown = actions.retry_delay(self.request.retries, exc.retry_after)
        logger.info(
            "delivery_retry_scheduled",
            intervention_id=intervention_id,
            retry=self.request.retries + 1,
            countdown=round(countdown, 2),
        )
        raise self.retry(exc=exc, countdown=countdown, queue="retries") from exc


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=240)
def deliver_interventions(intervention_ids: list[str]) -> dict[str, int]:
    """A chunk of a batch; an item with a transient error gets its own retrying task."""
    result = actions.do_deliver_many(intervention_ids)
    for intervention_id, retry_after in result.to_retry:
        deliver_intervention.apply_async(
            args=(intervention_id,),
            countdown=actions.retry_delay(0, retry_after),
            queue="retries",
        )
    return dict(result.outcomes)


@shared_task(acks_late=True, reject_on_worker_lost=True, time_limit=300, soft_time_limit=240)
def decide_events(event_ids: list[int]) -> dict[str, int]:
    """A chunk of events accepted in bulk, decided in one transaction (decisioning queue)."""
    return dict(actions.do_decide_events(event_ids))


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def release_due_interventions() -> int:
    return actions.do_release_due()


@shared_task(acks_late=True, time_limit=120, soft_time_limit=100)
def sweep_stuck_interventions() -> dict[str, Any]:
    return actions.do_sweep_stuck()


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def prune_expired_rows() -> dict[str, int]:
    return actions.do_prune_expired()
