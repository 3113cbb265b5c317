"""Sending: dispatch to the channel's queue, claim, call the transport, record (docs/delivery.md).

Delivery is "exactly once in effect": every send is a row before it is a network call, a
task claims the row with a conditional update (queued → sending) right before its own
provider call, so a repeated task is a no-op and a crash leaves at most the one call
under way in doubt (``unconfirmed``, never re-sent; see ``periodic.do_sweep_stuck``): one
item, or one chunk for a transport that takes a chunk in one call. Tasks are enqueued by name: actions never import tasks.
"""

import random
import time as monotonic_time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

import structlog
from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from interventions import metrics
from interventions.actions.facts import shopper_facts
from interventions.actions.personalization import render_for
from interventions.errors import TransientDeliveryError
from interventions.models import (
    DeliveryAttempt,
    IllegalTransition,
    Intervention,
    Status,
    record_attempts_succeeded,
    transition,
    transition_each,
)
from notifications.actions import do_suppress_address
from notifications.recipients import Reachability, contact_address, reachability
from notifications.transports.base import (
    OutboundMessage,
    Transport,
    TransportError,
    get_transport,
)
from templates.rendering import RenderError

logger = structlog.get_logger(__name__)


# Interventions per Celery task when a batch is dispatched.
DISPATCH_CHUNK = 100


def dispatch(intervention_id: Any, channel: str, loaded: Intervention | None = None) -> None:
    """Hand a queued intervention to its channel. Called after commit.

    WebSocket is sent inline (a publish is ~1 ms; a Celery hop would add 5-10 ms and cap
    throughput). Other channels go to their own Celery queue, so a slow provider cannot
    hold up the rest. If the broker is down the row stays queued and the sweeper
    re-dispatches it: the intervention is never lost with the message.
    """
    if channel == "websocket":
        try:
            do_deliver(intervention_id, loaded)
        except TransientDeliveryError as exc:
            logger.warning(
                "websocket_publish_deferred", intervention_id=str(intervention_id), error=str(exc)
            )
        return
    try:
        _enqueue("interventions.tasks.deliver_intervention", (str(intervention_id),), channel)
    except Exception as exc:
        metrics.ENQUEUE_FAILURES.labels(queue=channel).inc()
        logger.error(
            "enqueue_failed_sweeper_will_retry",
            intervention_id=str(intervention_id),
            queue=channel,
            error=str(exc),
        )


def dispatch_many(queued: list[tuple[Any, str]]) -> None:
    """Dispatch a batch: one Celery task per chunk and channel instead of one per item.

    WebSocket items go through the websocket queue here too: publishing a whole batch
    inline would hold the API response for the length of the batch.
    """
    by_channel: dict[str, list[str]] = {}
    for pk, channel in queued:
        by_channel.setdefault(channel, []).append(str(pk))
    for channel, ids in by_channel.items():
        for start in range(0, len(ids), DISPATCH_CHUNK):
            chunk = ids[start : start + DISPATCH_CHUNK]
            try:
                _enqueue("interventions.tasks.deliver_interventions", (chunk,), channel)
            except Exception as exc:
                metrics.ENQUEUE_FAILURES.labels(queue=channel).inc(len(chunk))
                logger.error(
                    "enqueue_failed_sweeper_will_retry",
                    queue=channel,
                    count=len(chunk),
                    error=str(exc),
                )


def _enqueue(task_name: str, args: tuple[Any, ...], queue: str) -> None:
    # By name, so actions need not import the tasks that call them; a registered task's
    # own apply_async runs, which keeps task_always_eager (embedded mode, tests) working.
    current_app.signature(task_name, args=args, queue=queue).apply_async()


def _block_at_send_time(intervention: Intervention, reach: Reachability) -> str:
    """Opt-outs and suppressions can arrive after the decision: STOP wins over a queued SMS."""
    channel = intervention.channel
    if channel in (intervention.shopper.opted_out_channels or ()):
        return f"{channel}: shopper opted out"
    if not reach.address(intervention.shopper, channel):
        return f"{channel}: no address known"
    if reach.is_suppressed(intervention.shopper, channel):
        return f"{channel}: address on the suppression list"
    return ""


def message_for(intervention: Intervention, recipient: str | list[str]) -> OutboundMessage:
    cart = intervention.cart
    return OutboundMessage(
        intervention_id=str(intervention.pk),
        store_id=str(intervention.store_id),
        channel=intervention.channel,
        recipient=recipient,
        content=intervention.content,
        shopper_id=intervention.shopper.external_id,
        metadata={
            "user_id": intervention.shopper.external_id,
            "kind": intervention.origin,
            "cart": {
                "id": cart.external_id,
                "value": str(cart.value) if cart.value is not None else None,
                "currency": cart.currency,
                "items": cart.items,
            }
            if cart
            else None,
            "discount": intervention.decision.get("discount"),
            "expires_at": intervention.expires_at.isoformat() if intervention.expires_at else None,
            "template_version": intervention.template_version_id,
        },
    )


@dataclass
class BatchDelivery:
    outcomes: Counter[str] = field(default_factory=Counter)
    # (intervention id, provider's retry-after) for items that failed transiently.
    to_retry: list[tuple[str, float | None]] = field(default_factory=list)


def do_deliver(intervention_id: Any, loaded: Intervention | None = None) -> str:
    """Send one queued intervention through its channel's transport. Safe to repeat.

    Returns what happened (for logs and tests): sent, skipped, suppressed, fell_back or
    failed. Raises TransientDeliveryError after putting the row back to queued.
    """
    # No ordering (``first()`` would sort by the model's default) and no store join:
    # this runs once per send.
    intervention = loaded or next(
        iter(
            Intervention.objects.select_related("shopper", "cart")
            .filter(pk=intervention_id)
            .order_by()
        ),
        None,
    )
    if intervention is None or intervention.status != Status.QUEUED:
        return "skipped"  # the claim below re-checks the row itself
    reach = reachability([intervention.shopper], [intervention.channel])
    return _deliver_loaded(intervention, reach, timezone.now())


def do_deliver_many(intervention_ids: list[str]) -> BatchDelivery:
    """Deliver a chunk of queued interventions: the reads batched, each send on its own.

    The send-time facts (suppressions, device tokens) are read once for the chunk; each
    item is then claimed (queued → sending, committed) right before its own provider
    call and recorded right after it, exactly as ``do_deliver`` does. So a worker killed
    mid-chunk leaves at most the one item whose call was under way in ``sending``; the
    rest are still ``queued`` and the sweeper dispatches them again (docs/delivery.md).
    A transport with a ``batch_size`` gets its items in one call instead
    (``_claim_and_send_chunk``), and that call is what a crash leaves in doubt.
    """
    result = BatchDelivery()
    # Channels whose transport takes a chunk in one call: claimed, sent, recorded as one.
    chunks: dict[str, list[tuple[Intervention, OutboundMessage]]] = {}
    interventions = list(
        Intervention.objects.select_related("shopper", "cart")
        .filter(pk__in=intervention_ids, status=Status.QUEUED)
        .order_by()
    )
    result.outcomes["skipped"] += len(intervention_ids) - len(interventions)
    reach = reachability(
        {i.shopper_id: i.shopper for i in interventions}.values(),
        {i.channel for i in interventions},
    )
    now = timezone.now()
    for intervention in interventions:
        try:
            settled = _settle_unsendable(intervention, reach, now)
            if settled:
                result.outcomes[settled] += 1
                continue
            transport = get_transport(intervention.channel)
            message = _message(intervention, reach)
            if transport.batch_size and intervention.channel != "websocket":
                chunks.setdefault(intervention.channel, []).append((intervention, message))
                continue
            result.outcomes[_send(intervention, transport, message)] += 1
        except TransientDeliveryError as exc:
            result.to_retry.append((str(intervention.pk), exc.retry_after))
    for channel, items in chunks.items():
        transport = get_transport(channel)
        for start in range(0, len(items), transport.batch_size):
            _claim_and_send_chunk(items[start : start + transport.batch_size], transport, result)
    return result


def _deliver_loaded(intervention: Intervention, reach: Reachability, now: datetime) -> str:
    settled = _settle_unsendable(intervention, reach, now)
    if settled:
        return settled
    transport = get_transport(intervention.channel)
    return _send(intervention, transport, _message(intervention, reach))


def _message(intervention: Intervention, reach: Reachability) -> OutboundMessage:
    recipient = reach.address(intervention.shopper, intervention.channel)
    assert recipient is not None  # checked by _block_at_send_time
    return message_for(intervention, recipient)


def _send(intervention: Intervention, transport: Transport, message: OutboundMessage) -> str:
    if intervention.channel == "websocket":
        return _publish_then_record(intervention, transport, message)
    return _claim_and_send(intervention, transport, message)


def _settle_unsendable(intervention: Intervention, reach: Reachability, now: datetime) -> str:
    """Expired or blocked at send time: settled here (its outcome), else ""."""
    if intervention.expires_at and intervention.expires_at <= now:
        try:
            transition(intervention, Status.FAILED, "failed: expired before it could be sent")
        except IllegalTransition:
            return "skipped"
        return "failed"
    blocked = _block_at_send_time(intervention, reach)
    if blocked:
        try:
            if fall_back(intervention, blocked):
                return "fell_back"
            transition(intervention, Status.SUPPRESSED, f"suppressed at send time: {blocked}")
        except IllegalTransition:
            return "skipped"
        return "suppressed"
    return ""


def _claim_and_send_chunk(
    items: list[tuple[Intervention, OutboundMessage]], transport: Transport, result: BatchDelivery
) -> None:
    """``_claim_and_send`` for a chunk the transport takes in one call (the log transport;
    a provider's batch API): one statement claims every row (queued → sending, with its
    history, outbox and started attempt rows), one call sends, one transaction records.

    ``sending`` still means "the call may have happened", now for the chunk's one call:
    a worker killed during it leaves the chunk to the sweeper, which marks it
    ``unconfirmed`` and never re-sends (docs/delivery.md).
    """
    channel = items[0][0].channel
    messages = {intervention.pk: message for intervention, message in items}
    claimed = transition_each(
        [
            (
                intervention,
                {"attempts": intervention.attempts + 1},
                [
                    DeliveryAttempt(
                        intervention=intervention,
                        channel=intervention.channel,
                        transport=transport.name,
                    )
                ],
            )
            for intervention, _ in items
        ],
        Status.SENDING,
        "claimed for sending",
    )
    result.outcomes["skipped"] += len(items) - len(claimed)  # claimed by another worker
    if not claimed:
        return
    started = monotonic_time.perf_counter()
    try:
        answers = transport.send_many([messages[intervention.pk] for intervention in claimed])
    finally:
        metrics.SEND_SECONDS.labels(channel=channel).observe(
            monotonic_time.perf_counter() - started
        )
    finished = timezone.now()
    sent = [
        (i, answer[:200])
        for i, answer in zip(claimed, answers, strict=True)
        if isinstance(answer, str)
    ]
    with transaction.atomic():
        record_attempts_succeeded(sent, finished)
        transition_each(
            [(i, {"provider_message_id": answer, "sent_at": finished}, []) for i, answer in sent],
            Status.SENT,
            f"sent via {transport.name}",
        )
    metrics.DELIVERY_ATTEMPTS.labels(channel=channel, outcome="succeeded").inc(len(sent))
    result.outcomes["sent"] += len(sent)
    for intervention, answer in zip(claimed, answers, strict=True):
        if isinstance(answer, TransportError):
            attempt = DeliveryAttempt.objects.get(
                intervention=intervention, outcome=DeliveryAttempt.Outcome.STARTED
            )
            try:
                result.outcomes[_handle_transport_error(intervention, attempt, answer)] += 1
            except TransientDeliveryError as exc:
                result.to_retry.append((str(intervention.pk), exc.retry_after))


def _claim_and_send(
    intervention: Intervention, transport: Transport, message: OutboundMessage
) -> str:
    """Claim (queued → sending, plus a started attempt row), commit, call, record.

    The claim is committed before the provider call, so ``sending`` means "the call may
    have happened" and nothing else: that is what the sweeper relies on.
    """
    try:
        with transaction.atomic():
            transition(
                intervention,
                Status.SENDING,
                "claimed for sending",
                attempts=intervention.attempts + 1,
            )
            attempt = DeliveryAttempt.objects.create(
                intervention=intervention, channel=intervention.channel, transport=transport.name
            )
    except IllegalTransition:
        return "skipped"  # another worker claimed it first
    started = monotonic_time.perf_counter()
    try:
        provider_message_id = transport.send(message)
    except TransportError as exc:
        return _handle_transport_error(intervention, attempt, exc)
    finally:
        metrics.SEND_SECONDS.labels(channel=intervention.channel).observe(
            monotonic_time.perf_counter() - started
        )
    finished = timezone.now()
    with transaction.atomic():
        DeliveryAttempt.objects.filter(pk=attempt.pk).update(
            outcome=DeliveryAttempt.Outcome.SUCCEEDED,
            provider_message_id=provider_message_id[:200],
            finished_at=finished,
        )
        transition(
            intervention,
            Status.SENT,
            f"sent via {transport.name}",
            provider_message_id=provider_message_id[:200],
            sent_at=finished,
        )
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome="succeeded").inc()
    return "sent"


def _publish_then_record(
    intervention: Intervention, transport: Transport, message: OutboundMessage
) -> str:
    """WebSocket: publish, then record queued → sent and the attempt in one transaction.

    No claim step before the send: a repeated publish is harmless (clients de-duplicate
    by intervention id), so the row does not need to be locked against a second sender,
    and the hot path saves a transaction. If the process dies between the publish and
    the record, the row is still queued and the sweeper publishes it again.
    """
    started_at = timezone.now()
    started = monotonic_time.perf_counter()
    try:
        message_id = transport.send(message)
    except TransportError as exc:
        DeliveryAttempt.objects.create(
            intervention=intervention,
            channel=intervention.channel,
            transport=transport.name,
            outcome=DeliveryAttempt.Outcome.PERMANENT_ERROR
            if exc.permanent
            else DeliveryAttempt.Outcome.TRANSIENT_ERROR,
            error=f"{exc.reason}: {exc}"[:500],
            started_at=started_at,
            finished_at=timezone.now(),
        )
        metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=exc.reason).inc()
        if not exc.permanent:
            raise TransientDeliveryError(str(exc), retry_after=exc.retry_after) from exc
        reason = f"websocket failed permanently: {exc.reason}: {exc}"
        if fall_back(intervention, reason):
            return "fell_back"
        transition(intervention, Status.FAILED, f"failed: {reason}")
        return "failed"
    finally:
        metrics.SEND_SECONDS.labels(channel=intervention.channel).observe(
            monotonic_time.perf_counter() - started
        )
    finished = timezone.now()
    try:
        # The status, its history row and the attempt row: one statement.
        transition(
            intervention,
            Status.SENT,
            f"published via {transport.name}",
            attempt=DeliveryAttempt(
                intervention=intervention,
                channel=intervention.channel,
                transport=transport.name,
                outcome=DeliveryAttempt.Outcome.SUCCEEDED,
                provider_message_id=message_id[:200],
                started_at=started_at,
                finished_at=finished,
            ),
            attempts=intervention.attempts + 1,
            provider_message_id=message_id[:200],
            sent_at=finished,
        )
    except IllegalTransition:
        return "skipped"  # cancelled, or another publisher recorded it first
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome="succeeded").inc()
    return "sent"


def _handle_transport_error(
    intervention: Intervention, attempt: DeliveryAttempt, exc: TransportError
) -> str:
    outcome = (
        DeliveryAttempt.Outcome.PERMANENT_ERROR
        if exc.permanent
        else DeliveryAttempt.Outcome.TRANSIENT_ERROR
    )
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(
        outcome=outcome, error=f"{exc.reason}: {exc}"[:500], finished_at=timezone.now()
    )
    metrics.DELIVERY_ATTEMPTS.labels(channel=intervention.channel, outcome=outcome).inc()
    metrics.DELIVERY_FAILURES.labels(channel=intervention.channel, reason=exc.reason).inc()
    logger.warning(
        "delivery_attempt_failed",
        intervention_id=str(intervention.pk),
        channel=intervention.channel,
        permanent=exc.permanent,
        reason=exc.reason,
        error=str(exc),
    )
    address = contact_address(intervention.shopper, intervention.channel)
    if exc.suppress_address and address:
        do_suppress_address(intervention.store_id, intervention.channel, address, exc.reason)
    if exc.permanent:
        reason = f"{intervention.channel} failed permanently: {exc.reason}: {exc}"
        if fall_back(intervention, reason):
            return "fell_back"
        transition(intervention, Status.FAILED, f"failed: {reason}")
        return "failed"
    transition(intervention, Status.QUEUED, f"transient failure, will retry: {exc.reason}: {exc}")
    raise TransientDeliveryError(str(exc), retry_after=exc.retry_after)


def fall_back(intervention: Intervention, reason: str = "") -> bool:
    """Move to the next usable channel of the chain; False when none is left."""
    shopper = intervention.shopper
    facts = shopper_facts(shopper)
    remaining = list(intervention.fallback_channels or [])
    skipped: list[str] = []
    while remaining:
        channel = remaining.pop(0)
        if channel in facts.opted_out_channels or channel in facts.suppressed_channels:
            continue
        if channel not in facts.reachable_channels:
            continue
        try:
            _, content = render_for(
                intervention.store,
                shopper,
                intervention.cart,
                channel,
                intervention.template_key,
                intervention.personalization,
                intervention.decision.get("discount"),
                intervention.pk,
            )
        except RenderError as exc:
            # A template written for email only has nothing to say by SMS: try the next.
            skipped.append(f"{channel} skipped: {exc}")
            continue
        note = "; ".join([*filter(None, [reason]), *skipped, f"falling back to {channel}"])
        transition(
            intervention,
            Status.QUEUED,
            note,
            channel=channel,
            fallback_channels=remaining,
            content=content,
            queued_at=timezone.now(),
        )
        metrics.FALLBACKS.labels(to_channel=channel).inc()
        transaction.on_commit(partial(dispatch, intervention.pk, channel))
        return True
    return False


def retry_delay(retries: int, retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter, or the provider's own delay when it gave one."""
    if retry_after:
        return min(retry_after, settings.DELIVERY_RETRY_MAX_DELAY)
    ceiling = min(
        settings.DELIVERY_RETRY_BASE_DELAY * 2**retries, settings.DELIVERY_RETRY_MAX_DELAY
    )
    return random.uniform(ceiling / 2, ceiling)
