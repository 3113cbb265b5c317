"""What beat runs: release scheduled sends when due, and sweep up after lost work."""

from datetime import datetime, timedelta
from functools import partial

import structlog
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from interventions import metrics
from interventions.actions.delivery import dispatch, dispatch_many
from interventions.actions.event_batches import do_redispatch_undecided
from interventions.models import (
    DeliveryAttempt,
    IllegalTransition,
    Intervention,
    Status,
    transition,
)
from notifications.transports.base import get_transport

logger = structlog.get_logger(__name__)


def do_release_due(limit: int = 500) -> int:
    """Scheduled interventions whose time has come go to their queue.

    A database scan instead of Celery ETAs: with Redis as broker, a task whose ETA lies
    beyond the visibility timeout is redelivered (and would run twice), and ETAs live
    in worker memory. The row's ``send_at`` is the schedule; nothing is lost on restart.
    """
    now = timezone.now()
    released = 0
    due = list(
        Intervention.objects.filter(status=Status.SCHEDULED, send_at__lte=now)
        .order_by("send_at")
        .values_list("pk", flat=True)[:limit]
    )
    for intervention in Intervention.objects.filter(pk__in=due):
        try:
            with transaction.atomic():
                transition(intervention, Status.QUEUED, "due: released by scheduler", queued_at=now)
                transaction.on_commit(partial(dispatch, intervention.pk, intervention.channel))
            released += 1
        except IllegalTransition:
            continue
    return released


def do_sweep_stuck(
    queued_after: float | None = None,
    sending_after: float | None = None,
    undecided_after: float | None = None,
) -> dict[str, int]:
    """Find work a lost broker message or a dead worker left behind.

    - queued for too long: the task was lost (broker restart, enqueue failure): dispatch again.
      A duplicate task is harmless, the claim lets only one send. WebSocket rows are
      picked up much sooner (``SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS``): an inline publish
      that failed while Redis was down has no task waiting to retry it, the shopper is on
      the site now, and a repeated publish is harmless.
    - sending for too long: the worker died during the provider call (a row is only in
      ``sending`` between its own claim and the call's result, so at most one per worker
      thread), and the provider may or may not have the message. WebSocket is
      re-published (clients de-duplicate by intervention id); other channels are not
      re-sent, since a second email or SMS is worse than the rare lost one: they become
      ``unconfirmed`` and the provider's delivery webhook, if it comes, settles them.
    - events accepted in bulk and still undecided: their decide_events task was lost or
      its worker died mid-chunk (which rolled the chunk back): enqueue them again.
    """
    now = timezone.now()
    queued_after = settings.SWEEP_QUEUED_AFTER_SECONDS if queued_after is None else queued_after
    sending_after = settings.SWEEP_SENDING_AFTER_SECONDS if sending_after is None else sending_after
    counts = {"redispatched": _redispatch_stale_queued(now, queued_after)}
    counts.update(_settle_stuck_sending(now, sending_after))
    counts["confirmed"] = _confirm_unconfirmed(now)
    counts["redecided"] = do_redispatch_undecided(
        settings.SWEEP_UNDECIDED_EVENTS_AFTER_SECONDS
        if undecided_after is None
        else undecided_after
    )
    if any(counts.values()):
        metrics.SWEPT.labels(kind="redispatched").inc(counts["redispatched"])
        metrics.SWEPT.labels(kind="republished").inc(counts["republished"])
        metrics.SWEPT.labels(kind="unconfirmed").inc(counts["unconfirmed"])
        metrics.SWEPT.labels(kind="confirmed").inc(counts["confirmed"])
        metrics.SWEPT.labels(kind="redecided").inc(counts["redecided"])
        logger.warning("sweeper_recovered_interventions", **counts)
    return counts


def _redispatch_stale_queued(now: datetime, queued_after: float) -> int:
    websocket_after = settings.SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS
    stale = list(
        Intervention.objects.filter(status=Status.QUEUED)
        .filter(
            Q(updated_at__lt=now - timedelta(seconds=queued_after))
            | Q(channel="websocket", updated_at__lt=now - timedelta(seconds=websocket_after))
        )
        .values_list("pk", "channel")[:1000]
    )
    if stale:
        # Touch the rows so the next sweep waits another full timeout for this dispatch.
        Intervention.objects.filter(pk__in=[pk for pk, _ in stale], status=Status.QUEUED).update(
            updated_at=now
        )
        # In chunks, as a batch is: after a crash there can be thousands of them.
        dispatch_many(stale)
    return len(stale)


def _settle_stuck_sending(now: datetime, sending_after: float) -> dict[str, int]:
    counts = {"republished": 0, "unconfirmed": 0}
    for intervention in Intervention.objects.filter(
        status=Status.SENDING, updated_at__lt=now - timedelta(seconds=sending_after)
    )[:1000]:
        try:
            if intervention.channel == "websocket":
                transition(
                    intervention, Status.QUEUED, "sweeper: publish interrupted, republishing"
                )
                dispatch(intervention.pk, intervention.channel)
                counts["republished"] += 1
                continue
            with transaction.atomic():
                transition(
                    intervention,
                    Status.UNCONFIRMED,
                    "unconfirmed: worker lost during the provider call; "
                    "not resent to avoid a duplicate",
                    sent_at=intervention.updated_at,  # the claim: when it may have gone
                )
                DeliveryAttempt.objects.filter(
                    intervention=intervention, outcome=DeliveryAttempt.Outcome.STARTED
                ).update(outcome=DeliveryAttempt.Outcome.WORKER_LOST, finished_at=now)
            counts["unconfirmed"] += 1
        except IllegalTransition:
            continue
    return counts


def _confirm_unconfirmed(now: datetime) -> int:
    """Ask the provider about sends a dead worker left in doubt, where it can be asked.

    Only a positive answer changes anything (unconfirmed → sent): "not found" may mean
    not indexed yet, and re-sending on it could reach the shopper twice. Asked for a day,
    at most 100 per sweep; unconfirmed rows are rare (one per worker crash at most).
    """
    confirmed = 0
    for intervention in Intervention.objects.filter(
        status=Status.UNCONFIRMED,
        sent_at__gt=now - timedelta(days=1),
        sent_at__lt=now - timedelta(seconds=settings.SWEEP_SENDING_AFTER_SECONDS),
    ).order_by("sent_at")[:100]:
        provider_message_id = get_transport(intervention.channel).find_sent(str(intervention.pk))
        if not provider_message_id:
            continue
        try:
            transition(
                intervention,
                Status.SENT,
                "confirmed by the provider after the worker was lost",
                provider_message_id=provider_message_id[:200],
            )
        except IllegalTransition:
            continue
        confirmed += 1
    return confirmed
