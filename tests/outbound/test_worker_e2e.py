"""Outbound webhooks through real processes: a Celery worker and beat on a Redis of the
test's own, PostgreSQL, and a real HTTP receiver on 127.0.0.1. The worker is killed while
a post is in flight; every event still arrives at least once, in order per intervention,
with the same webhook-id on every try, and every request verifies with standardwebhooks.
"""

import json
from itertools import pairwise

import pytest
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from interventions.models import Intervention, InterventionEvent, Status, record_created, transition
from outbound.actions import do_create_endpoint
from outbound.models import DeliveryStatus, OutboxEvent, WebhookDelivery
from stores.models import Shopper
from tests.support import processes
from tests.support.processes import engine_env, running, wait_for
from tracking.actions import do_record_tracking_event

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.real_worker, pytest.mark.slow]


def lifecycles(store, count: int) -> list[Intervention]:
    """``count`` interventions taken through created → queued → sending → sent → opened →
    clicked by the engine's own writers, interleaved so their events mix in the outbox."""
    interventions = []
    for n in range(count):
        shopper = Shopper.objects.create(store=store, external_id=f"u{n}", email=f"u{n}@ex.test")
        intervention = Intervention(
            store=store, shopper=shopper, origin="trigger", requested_channel="email",
            channel="email", status=Status.PENDING,
        )  # fmt: skip
        first = InterventionEvent(
            intervention=intervention, to_status=Status.PENDING, reason="decided"
        )
        record_created([(intervention, first)])
        interventions.append(intervention)
    steps = [
        lambda i: transition(i, Status.QUEUED, "queued"),
        lambda i: transition(i, Status.SENDING, "claimed"),
        lambda i: transition(i, Status.SENT, "sent", sent_at=timezone.now()),
        lambda i: do_record_tracking_event(i, "opened", "pixel"),
        lambda i: do_record_tracking_event(i, "clicked", "link"),
    ]
    for step in steps:
        for intervention in interventions:
            step(intervention)
    return interventions


def test_worker_killed_mid_delivery_every_event_arrives_in_order_with_one_id(
    shop, tmp_path, receiver
):
    # given an endpoint and three interventions' lifecycles in the outbox (18 events)
    endpoint = do_create_endpoint(shop.store, receiver.url)
    interventions = lifecycles(shop.store, 3)
    events = list(OutboxEvent.objects.order_by("id"))
    assert len(events) == 18
    # the receiver hangs on one event (the worker is killed while it waits) and
    # refuses another once
    hung = next(e for e in events if e.type == "intervention.sending")
    refused = next(e for e in events if e.type == "tracking.opened")
    receiver.delays[hung.webhook_id] = 6.0
    receiver.statuses[refused.webhook_id] = [500]

    redis_port = processes.free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    env = engine_env(
        redis_url,
        WEBHOOK_DISPATCH_INTERVAL_SECONDS="0.5",
        WEBHOOK_LEASE_SECONDS="10",
        WEBHOOK_TIMEOUT_SECONDS="2",
        WEBHOOK_RETRY_BASE_DELAY="0.5",
        WEBHOOK_RETRY_MAX_DELAY="1",
    )
    redis = running(processes.redis_command(redis_port), env, tmp_path / "redis.log")
    beat = running(processes.beat_command(tmp_path / "beat-schedule"), env, tmp_path / "beat.log")
    with redis, beat:
        # when a worker starts sending and is killed with the hung post in flight
        with running(processes.worker_command(), env, tmp_path / "worker-1.log") as first:
            wait_for(lambda: hung.webhook_id in receiver.ids(), timeout=60)
            processes.kill(first)
        # and another worker takes over
        with running(processes.worker_command(), env, tmp_path / "worker-2.log"):
            wait_for(
                lambda: (
                    not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists()
                    and WebhookDelivery.objects.count() == len(events)
                ),
                timeout=90,
            )

    # then every event arrived at least once
    ids = receiver.ids()
    assert {e.webhook_id for e in events} <= set(ids)
    # the hung and the refused ones more than once, each time with the same webhook-id
    assert ids.count(hung.webhook_id) >= 2
    assert ids.count(refused.webhook_id) >= 2
    # in order per intervention: event k+1 never before the last try of event k
    for intervention in interventions:
        own = [e.webhook_id for e in events if e.intervention_id == intervention.pk]
        assert len(own) == 6
        for earlier, later in pairwise(own):
            last_try = max(i for i, seen in enumerate(ids) if seen == earlier)
            assert last_try < ids.index(later), (earlier, later)
    # and every request, retries included, verifies with the endpoint's secret
    verifier = Webhook(endpoint.secret)
    for request in receiver.received:
        body = verifier.verify(request.body, request.headers)
        assert json.loads(request.body) == body
    retries = [r for r in receiver.received if r.webhook_id == hung.webhook_id]
    assert len({r.body for r in retries}) == 1, "a retry is the same message"
