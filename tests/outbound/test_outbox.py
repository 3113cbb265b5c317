"""Every lifecycle change, tracking row and order writes exactly one outbox event, in the
same transaction as the change (docs/webhooks.md)."""

import pytest
from django.db import transaction
from django.utils import timezone

from interventions.actions import do_mark_delivered_many
from interventions.models import IllegalTransition, Intervention, InterventionEvent, transition
from tests.outbound.conftest import outbox, send, track

pytestmark = pytest.mark.django_db(transaction=True)


def test_each_status_change_and_tracking_row_is_one_event_in_order(shop):
    # given an intervention sent through the intake, then opened and clicked
    intervention_id = send(shop)
    track(shop, intervention_id, "opened")
    track(shop, intervention_id, "clicked")

    # when the outbox is read for it
    events = outbox(intervention_id=intervention_id)

    # then there is one event per history row, then the two tracking rows, in order
    history = InterventionEvent.objects.filter(intervention_id=intervention_id).order_by("at", "id")
    assert [e.type for e in events] == [
        *(f"intervention.{h.to_status}" for h in history),
        "tracking.opened",
        "tracking.clicked",
    ]
    assert [e.data["status"] for e in events[: history.count()]] == [h.to_status for h in history]
    assert events[0].data["from_status"] is None
    assert {e.stream for e in events} == {"intervention-events"}
    assert len({e.webhook_id for e in events}) == len(events)


def test_an_order_is_one_conversion_event_with_its_credit(shop):
    # given a send
    intervention_id = send(shop)

    # when the store reports the order, twice
    body = {"order_id": "o-1", "user_id": "sam", "value": "80.00", "currency": "EUR"}
    shop.client.post("/api/v1/conversions", body, format="json")
    shop.client.post("/api/v1/conversions", body, format="json")

    # then one conversion event names the intervention it was attributed to
    [conversion] = outbox(type="conversion.recorded")
    assert conversion.stream == "conversion-events"
    assert conversion.data["attributed_to"] == intervention_id
    assert conversion.data["credits"][0]["intervention_id"] == intervention_id
    assert len(outbox(type="tracking.converted", intervention_id=intervention_id)) == 1


def deliver_then_fail(intervention: Intervention) -> None:
    with transaction.atomic():
        transition(intervention, "delivered", "ack")
        raise RuntimeError("the caller failed after the change")


def test_a_refused_transition_or_a_rolled_back_one_writes_no_event(shop):
    # given a sent intervention and its events so far
    intervention = Intervention.objects.get(pk=send(shop))
    before = len(outbox())

    # when a transition is illegal, and another is rolled back with its transaction
    with pytest.raises(IllegalTransition):
        transition(intervention, "sending", "stale worker")
    with pytest.raises(RuntimeError):
        deliver_then_fail(intervention)

    # then neither left an event behind
    assert len(outbox()) == before


def test_a_burst_of_acks_writes_one_event_per_row_that_moved(shop):
    # given two sent interventions and one already delivered
    first, second = (Intervention.objects.get(pk=send(shop, cart_id=c)) for c in ("c-1", "c-2"))
    track(shop, second.pk, "delivered")
    assert Intervention.objects.get(pk=second.pk).status == "delivered"
    before = {e.webhook_id for e in outbox()}

    # when acks for both arrive in one burst
    moved = do_mark_delivered_many(
        [(first, timezone.now()), (Intervention.objects.get(pk=second.pk), timezone.now())],
        "websocket",
    )

    # then only the one that moved has new events: its status and its tracking row
    new = [e for e in outbox() if e.webhook_id not in before]
    assert moved == {first.pk}
    assert [(str(e.intervention_id), e.type) for e in new] == [
        (str(first.pk), "intervention.delivered"),
        (str(first.pk), "tracking.delivered"),
    ]


def test_a_status_event_carries_the_fields_after_the_change(shop):
    # given a sent email that then bounced
    intervention = Intervention.objects.get(pk=send(shop))
    transition(intervention, "failed", "bounced")

    # when it is re-queued on the next channel of its fallback chain
    transition(intervention, "queued", "falling back to sms", channel="sms")

    # then the event names the new channel
    [requeued] = outbox(type="intervention.queued", data__from_status="failed")
    assert requeued.data["channel"] == "sms"
