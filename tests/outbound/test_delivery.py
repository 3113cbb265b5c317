"""Outbox events reach a real HTTP receiver signed per Standard Webhooks, in order, with
retries, backoff, auto-disable, replay and pruning (docs/webhooks.md). The dispatcher and
the send tasks run in-process here; test_worker_e2e.py runs them in a real worker."""

import json
import socket
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone
from standardwebhooks.webhooks import Webhook

from outbound.actions import (
    do_create_endpoint,
    do_dispatch_outbox,
    do_prune_webhooks,
    do_update_endpoint,
)
from outbound.models import OutboxEvent, WebhookDelivery, WebhookEndpoint
from tests.outbound.conftest import outbox, send, track

pytestmark = pytest.mark.django_db(transaction=True)


def test_events_arrive_signed_by_the_standard_webhooks_rules(shop, receiver, endpoint):
    # given an intervention sent and opened
    intervention_id = send(shop)
    track(shop, intervention_id, "opened")

    # when the dispatcher runs
    do_dispatch_outbox()

    # then every event arrived once, in order, and verifies with the endpoint's secret
    assert receiver.ids() == [e.webhook_id for e in outbox()]
    verifier = Webhook(endpoint.secret)
    for request in receiver.received:
        payload = verifier.verify(request.body, request.headers)
        assert set(payload) == {"type", "timestamp", "data"}
    opened = json.loads(receiver.received[-1].body)
    assert opened["type"] == "tracking.opened"
    assert opened["data"]["intervention_id"] == intervention_id


def test_a_tampered_body_does_not_verify(shop, receiver, endpoint):
    send(shop)
    do_dispatch_outbox()
    request = receiver.received[0]

    with pytest.raises(Exception, match="No matching signature"):
        Webhook(endpoint.secret).verify(request.body.replace("email", "sms"), request.headers)


def test_a_failed_event_holds_back_the_next_and_is_retried_with_the_same_id(
    shop, receiver, endpoint
):
    # given three events, the second of which the receiver refuses once
    intervention_id = send(shop)
    track(shop, intervention_id, "opened")
    track(shop, intervention_id, "clicked")
    events = [e.webhook_id for e in outbox()]
    refused = events[1]
    receiver.statuses[refused] = [503]

    # when the dispatcher runs
    do_dispatch_outbox()

    # then nothing after the refused event was sent, and the endpoint backs off
    assert receiver.ids() == events[:2]
    endpoint.refresh_from_db()
    assert endpoint.consecutive_failures == 1
    assert endpoint.next_attempt_at > timezone.now()
    do_dispatch_outbox()
    assert receiver.ids() == events[:2], "still backing off"

    # when the backoff has passed
    with time_machine.travel(endpoint.next_attempt_at + timedelta(seconds=1)):
        do_dispatch_outbox()

    # then the refused event went again with its id, then the rest, in order
    assert receiver.ids() == [events[0], refused, *events[1:]]
    endpoint.refresh_from_db()
    assert (endpoint.consecutive_failures, endpoint.next_attempt_at) == (0, None)
    assert WebhookDelivery.objects.get(event__webhook_id=refused).attempts == 2


def test_an_endpoint_failing_again_and_again_is_disabled_then_resumes_in_order(
    shop, receiver, endpoint, settings
):
    # given an endpoint that is down
    settings.WEBHOOK_DISABLE_AFTER_FAILURES = 3
    receiver.always = 500
    send(shop)
    expected = [e.webhook_id for e in outbox()]

    # when the dispatcher keeps trying past each backoff
    for _ in range(5):
        endpoint.refresh_from_db()
        with time_machine.travel(
            (endpoint.next_attempt_at or timezone.now()) + timedelta(seconds=1)
        ):
            do_dispatch_outbox()

    # then it was tried three times and disabled
    endpoint.refresh_from_db()
    assert (endpoint.enabled, endpoint.consecutive_failures) == (False, 3)
    assert endpoint.disabled_reason == "3 consecutive failures"
    assert receiver.ids() == [expected[0]] * 3

    # when it is back up and re-enabled
    receiver.always = None
    response = shop.client.patch(
        f"/api/v1/webhook-endpoints/{endpoint.pk}", {"enabled": True}, format="json"
    )
    do_dispatch_outbox()

    # then everything pending goes, in order
    assert response.status_code == 200
    assert receiver.ids()[3:] == expected


def test_an_endpoint_gets_only_the_event_types_it_asked_for(shop, receiver):
    # given an endpoint for conversions only
    response = shop.client.post(
        "/api/v1/webhook-endpoints",
        {"url": receiver.url, "event_types": ["conversion.*"]},
        format="json",
    )
    assert response.status_code == 201
    send(shop)
    shop.client.post(
        "/api/v1/conversions",
        {"order_id": "o-1", "user_id": "sam", "value": "10.00", "currency": "EUR"},
        format="json",
    )

    # when the dispatcher runs
    do_dispatch_outbox()

    # then only the order arrived
    assert [json.loads(r.body)["type"] for r in receiver.received] == ["conversion.recorded"]


def test_another_stores_events_never_reach_this_stores_endpoint(
    shop, other_shop, receiver, endpoint
):
    other_shop.store.quiet_hours_start = other_shop.store.quiet_hours_end = None
    other_shop.store.save()
    send(other_shop, user_id="kim")

    do_dispatch_outbox()

    assert receiver.received == []


def test_replay_sends_chosen_events_again_with_their_ids(shop, receiver, endpoint):
    # given events already delivered
    send(shop)
    do_dispatch_outbox()
    first_round = receiver.ids()

    # when two are replayed by id, and everything since a time
    chosen = first_round[:2]
    by_ids = shop.client.post(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/replay", {"ids": chosen}, format="json"
    )
    do_dispatch_outbox()
    since = shop.client.post(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/replay",
        {"since": (timezone.now() - timedelta(hours=1)).isoformat()},
        format="json",
    )
    do_dispatch_outbox()

    # then they arrive again with the same webhook-id, in order
    assert (by_ids.status_code, by_ids.json()) == (202, {"queued": 2})
    assert since.json() == {"queued": len(first_round)}
    assert receiver.ids() == [*first_round, *chosen, *first_round]


def test_replay_needs_since_or_ids(shop, endpoint):
    response = shop.client.post(
        f"/api/v1/webhook-endpoints/{endpoint.pk}/replay", {}, format="json"
    )

    assert response.status_code == 400
    assert "since" in json.dumps(response.json())


def test_a_target_refused_at_send_time_is_not_posted(shop, receiver, endpoint, settings):
    # given an endpoint saved while private targets were allowed
    send(shop)
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False

    # when the dispatcher runs
    do_dispatch_outbox()

    # then nothing left, and the endpoint says why
    assert receiver.received == []
    endpoint.refresh_from_db()
    assert "private, loopback or reserved" in endpoint.last_error


def test_delivered_rows_are_pruned_after_retention_and_pending_ones_kept(
    shop, receiver, endpoint, settings
):
    # given one delivered event and, for a disabled endpoint, one pending
    settings.WEBHOOK_RETENTION_DAYS = 7
    send(shop)
    do_dispatch_outbox()
    do_update_endpoint(endpoint, {"enabled": False})
    track(shop, OutboxEvent.objects.first().intervention_id, "opened")
    do_dispatch_outbox()  # fans out to no one: the endpoint is disabled
    pending_endpoint = WebhookEndpoint.objects.create(
        store=shop.store, url=receiver.url, secret=endpoint.secret, enabled=False
    )
    WebhookDelivery.objects.create(endpoint=pending_endpoint, event=OutboxEvent.objects.last())

    # when retention runs eight days later
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        pruned = do_prune_webhooks()

    # then delivered rows and their events are gone; the pending one stays
    assert pruned["deliveries"] >= 1
    assert list(WebhookDelivery.objects.values_list("status", flat=True)) == ["pending"]
    assert OutboxEvent.objects.count() == 1


def test_with_the_relay_on_commit_events_arrive_without_beat(shop, receiver, endpoint, settings):
    # given embedded mode's setting: no beat, tasks in-process
    settings.WEBHOOK_RELAY_ON_COMMIT = True

    # when an intervention is sent and opened, and no dispatcher runs
    intervention_id = send(shop)
    track(shop, intervention_id, "opened")

    # then every event has arrived, in order
    assert receiver.ids() == [e.webhook_id for e in outbox()]
    assert json.loads(receiver.received[-1].body)["type"] == "tracking.opened"


def test_a_name_rebound_after_the_check_cannot_move_the_post_here(
    shop, receiver, settings, monkeypatch
):
    # given the address check on, and a name that answers a public address to the first
    # lookup of each post and this machine (the receiver) to any later one: DNS rebinding
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    real_getaddrinfo = socket.getaddrinfo
    lookups = []

    def rebinding_resolver(host, port, *args, **kwargs):
        if host != "hooks.example.test":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        address = "93.184.215.14" if len(lookups) % 2 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_resolver)
    port = receiver.url.split(":")[2].split("/")[0]
    endpoint = do_create_endpoint(shop.store, f"http://hooks.example.test:{port}/hooks")

    # when an event is sent
    send(shop)
    lookups.clear()
    do_dispatch_outbox()

    # then the name was resolved once, and the post never reached this machine (it went
    # to the public address the check passed, which the test network blocks)
    assert lookups == ["hooks.example.test"]
    assert receiver.received == []
    assert not WebhookDelivery.objects.filter(endpoint=endpoint, status="delivered").exists()
