"""Changes to an intervention after its decision: API and admin edits, delivery reports."""

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from interventions import metrics
from interventions.actions.delivery import dispatch, fall_back
from interventions.errors import InterventionConflict
from interventions.models import (
    UNSENT_STATUSES,
    IllegalTransition,
    Intervention,
    Status,
    transition,
    transition_each,
)
from tracking.actions import do_record_tracking_event, tracking_rows


def do_cancel_intervention(intervention: Intervention, reason: str = "cancelled by API") -> None:
    if intervention.status not in UNSENT_STATUSES:
        raise InterventionConflict(f"Cannot cancel an intervention that is {intervention.status}.")
    try:
        transition(intervention, Status.CANCELLED, reason)
    except IllegalTransition as exc:
        raise InterventionConflict(str(exc)) from exc


def do_update_unsent(intervention: Intervention, changes: dict[str, Any]) -> Intervention:
    """Reschedule or edit content before the send (PATCH)."""
    with transaction.atomic():
        locked = Intervention.objects.select_for_update().get(pk=intervention.pk)
        if locked.status not in (Status.PENDING, Status.SCHEDULED, Status.QUEUED):
            raise InterventionConflict(f"Cannot change an intervention that is {locked.status}.")
        fields = []
        for name in ("content", "personalization", "expires_at"):
            if name in changes:
                setattr(locked, name, changes[name])
                fields.append(name)
        if fields:
            locked.save(update_fields=[*fields, "updated_at"])
        if "send_at" in changes:
            send_at = max(changes["send_at"], timezone.now())
            if locked.status == Status.QUEUED and send_at > timezone.now():
                transition(locked, Status.SCHEDULED, "rescheduled by API", send_at=send_at)
            elif locked.status == Status.SCHEDULED:
                transition(
                    locked,
                    Status.SCHEDULED,
                    f"rescheduled by API to {send_at.isoformat()}",
                    send_at=send_at,
                )
    return locked


def do_retry_failed(intervention: Intervention, reason: str = "retry requested") -> None:
    if intervention.status != Status.FAILED:
        raise InterventionConflict(
            f"Only failed interventions can be retried, not {intervention.status}."
        )
    with transaction.atomic():
        transition(
            intervention, Status.QUEUED, reason, queued_at=timezone.now(), send_at=timezone.now()
        )
        transaction.on_commit(lambda: dispatch(intervention.pk, intervention.channel))


def do_mark_delivered(intervention: Intervention, source: str, at: datetime | None = None) -> bool:
    """sent → delivered (a WebSocket ack, a provider's delivery report); False if not sent."""
    at = at or timezone.now()
    try:
        with transaction.atomic():
            transition(intervention, Status.DELIVERED, f"delivered ({source})", delivered_at=at)
            do_record_tracking_event(intervention, "delivered", source=source, occurred_at=at)
    except IllegalTransition:
        return False
    metrics.DELIVERED.labels(channel=intervention.channel).inc()
    return True


def do_mark_delivered_many(
    deliveries: list[tuple[Intervention, datetime]], source: str
) -> set[Any]:
    """sent → delivered for a batch (WebSocket acks arrive in bursts): the ids that moved.

    Same result as ``do_mark_delivered`` one by one (status, history row, tracking row,
    their outbox rows), in one statement for the whole batch (``transition_each``).
    """
    moved = transition_each(
        [
            (
                intervention,
                {"delivered_at": at},
                tracking_rows(intervention, "delivered", source, at),
            )
            for intervention, at in deliveries
        ],
        Status.DELIVERED,
        f"delivered ({source})",
    )
    for intervention in moved:
        metrics.DELIVERED.labels(channel=intervention.channel).inc()
    return {intervention.pk for intervention in moved}


def do_fail_after_send(intervention: Intervention, reason: str, source: str) -> bool:
    """sent → failed (hard bounce, undeliverable SMS), then the next fallback channel."""
    try:
        transition(intervention, Status.FAILED, f"failed after send ({source}): {reason}")
    except IllegalTransition:
        return False
    metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=reason[:40]).inc()
    fall_back(intervention)
    return True


def do_give_up(intervention_id: Any, reason: str) -> None:
    """Retries are exhausted: fail, or fall back to the next channel."""
    intervention = Intervention.objects.select_related("shopper", "cart", "store").get(
        pk=intervention_id
    )
    if intervention.status != Status.QUEUED:
        return
    note = f"{intervention.channel} gave up after {intervention.attempts} attempts: {reason}"
    if not fall_back(intervention, note):
        transition(intervention, Status.FAILED, f"failed: {note}")
