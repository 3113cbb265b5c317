"""Delivery in chunks, for a transport that takes a chunk in one call (the log transport).

The chunk is claimed with one statement, sent with one call and recorded in one
transaction; each intervention ends as a single delivery would leave it.
"""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from interventions.actions import do_deliver_many
from interventions.models import Intervention, Status
from notifications.transports.base import LogTransport, OutboundMessage

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def email_to_log(settings, shop):
    from notifications.transports.base import get_transport

    settings.NOTIFICATION_TRANSPORTS = {**settings.NOTIFICATION_TRANSPORTS, "email": "log"}
    get_transport.cache_clear()
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.save()
    LogTransport.outbox.clear()
    yield
    get_transport.cache_clear()


def queued_emails(shop, count: int, run: str) -> list[str]:
    """Emails decided and waiting in the queue (scheduled, then released by hand)."""
    later = (timezone.now() + timedelta(minutes=5)).isoformat()
    items = [
        {
            "user_id": f"{run}-{n}",
            "channel": "email",
            "scheduled_at": later,
            "user": {"email": f"{run}-{n}@example.test"},
        }
        for n in range(count)
    ]
    answer = shop.client.post(
        "/api/v1/interventions/batch", {"interventions": items}, format="json"
    )
    ids = [r["intervention"]["id"] for r in answer.json()["results"]]
    Intervention.objects.filter(pk__in=ids).update(status=Status.QUEUED)
    return ids


def test_a_chunk_is_sent_once_and_recorded_like_single_sends(shop):
    # Given queued emails and one a shopper opted out of after the decision
    ids = queued_emails(shop, 4, "a")
    Intervention.objects.get(pk=ids[3]).shopper.__class__.objects.filter(external_id="a-3").update(
        opted_out_channels=["email"]
    )

    # When a worker delivers the chunk, and the task is repeated
    first = do_deliver_many(ids)
    again = do_deliver_many(ids)

    # Then each went out once, with the history and attempt a single send records
    assert dict(first.outcomes) == {"skipped": 0, "sent": 3, "suppressed": 1}
    assert again.outcomes["skipped"] == 4
    assert sorted(m.intervention_id for m in LogTransport.outbox) == sorted(ids[:3])
    for pk in ids[:3]:
        intervention = Intervention.objects.get(pk=pk)
        assert intervention.status == Status.SENT
        assert intervention.provider_message_id == f"log-{pk}"
        assert intervention.attempts == 1
        assert [(e.from_status, e.to_status) for e in intervention.events.all()] == [
            ("", "scheduled"), ("queued", "sending"), ("sending", "sent")
        ]  # fmt: skip
        attempt = intervention.attempts_log.get()
        assert (attempt.outcome, attempt.provider_message_id) == ("succeeded", f"log-{pk}")
        assert attempt.finished_at is not None


def test_the_statements_a_chunk_costs_do_not_grow_with_its_size(shop):
    few, many = queued_emails(shop, 3, "few"), queued_emails(shop, 40, "many")

    with CaptureQueriesContext(connection) as small:
        do_deliver_many(few)
    with CaptureQueriesContext(connection) as large:
        do_deliver_many(many)

    assert Intervention.objects.filter(status=Status.SENT).count() == 43
    assert len(large) == len(small)


def test_the_log_transport_keeps_only_the_last_messages():
    transport = LogTransport("email")
    message = OutboundMessage(
        intervention_id="i", store_id="s", channel="email", recipient="a@example.test", content={}
    )

    for _ in range(LogTransport.outbox.maxlen + 10):
        transport.send(message)

    assert len(LogTransport.outbox) == LogTransport.outbox.maxlen
