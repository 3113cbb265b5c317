"""Orders: POST /api/v1/conversions and checkout events, attributed to the last touch."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign
from tests.tracking.conftest import SAM, reported, send
from tracking.models import Conversion, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def order(session, **body):
    defaults = {"order_id": "o-1", "user_id": "sam", "value": "100.00", "currency": "EUR"}
    return reported(session, "/api/v1/conversions", {**defaults, **body})


def test_order_goes_to_the_shoppers_last_send_on_any_cart(shop):
    with time_machine.travel(MONDAY, tick=False):
        first = send(shop, cart_id="c-1")
    with time_machine.travel(MONDAY + timedelta(hours=1), tick=False):
        last = send(shop, cart_id="c-2")
    placed = MONDAY + timedelta(hours=2)

    response = order(shop, cart_id="c-3", occurred_at=placed.isoformat())

    assert response.status_code == 201
    body = response.json()
    assert (body["attributed_to"], body["recovered_revenue"], body["currency"]) == (
        last,
        "100.00",
        "EUR",
    )
    converted = TrackingEvent.objects.get(kind="converted")
    assert (str(converted.intervention_id), str(converted.revenue)) == (last, "100.00")
    assert converted.metadata["order_id"] == "o-1"
    assert not TrackingEvent.objects.filter(intervention_id=first, kind="converted").exists()


def test_order_after_the_window_is_recorded_but_not_attributed(shop, settings):
    settings.ATTRIBUTION_WINDOW_HOURS = 72
    with time_machine.travel(MONDAY, tick=False):
        send(shop)

    late = order(shop, occurred_at=(MONDAY + timedelta(hours=73)).isoformat()).json()

    assert (late["attributed_to"], late["recovered_revenue"]) == (None, None)
    assert Conversion.objects.count() == 1
    assert not TrackingEvent.objects.filter(kind="converted").exists()


def test_repeat_answers_the_first_and_a_different_body_is_a_conflict(shop):
    placed = (MONDAY + timedelta(hours=1)).isoformat()
    with time_machine.travel(MONDAY, tick=False):
        send(shop)
    first = order(shop, occurred_at=placed)

    repeat = order(shop, occurred_at=placed)
    changed = order(shop, occurred_at=placed, value="250.00")

    assert (first.status_code, repeat.status_code, changed.status_code) == (201, 200, 409)
    assert repeat.json() == first.json()
    assert changed.json()["error"]["code"] == "conflict"
    assert Conversion.objects.count() == 1
    assert TrackingEvent.objects.filter(kind="converted").count() == 1


def test_recovered_revenue_is_net_of_the_discount_given(shop):
    Campaign.objects.create(
        store=shop.store,
        name="Ten percent",
        trigger="cart_abandoned",
        channel="email",
        discount_percent=10,
    )
    with time_machine.travel(MONDAY, tick=False):
        shop.client.post(
            "/api/v1/events",
            {"type": "cart_abandoned", "cart_id": "c-1", "user_id": "sam", "user": SAM,
             "cart": {"value": "100.00", "currency": "EUR"}},
            format="json",
        )  # fmt: skip
    placed = (MONDAY + timedelta(hours=1)).isoformat()

    from_percent = order(shop, order_id="o-1", occurred_at=placed).json()
    reported = order(shop, order_id="o-2", occurred_at=placed, discount="4.50").json()

    assert (from_percent["discount"], from_percent["recovered_revenue"]) == ("10.00", "90.00")
    assert (reported["discount"], reported["recovered_revenue"]) == ("4.50", "95.50")


def test_checkout_event_lands_in_the_same_table_once(shop):
    with time_machine.travel(MONDAY, tick=False):
        sent = send(shop, cart_id="c-9")
    checkout = {
        "type": "checkout_completed",
        "cart_id": "c-9",
        "user_id": "sam",
        "cart": {"value": "80.00", "currency": "EUR"},
        "occurred_at": (MONDAY + timedelta(hours=1)).isoformat(),
    }

    reported(shop, "/api/v1/events", checkout)
    reported(shop, "/api/v1/events", checkout)
    reported(shop, "/api/v1/events", {**checkout, "order_id": "A-77"})

    assert [(c.order_id, str(c.intervention_id), str(c.recovered_revenue), c.currency)
            for c in Conversion.objects.order_by("id")] == [
        ("cart:c-9", sent, "80.00", "EUR"),
        ("A-77", sent, "80.00", "EUR"),
    ]  # fmt: skip


def test_another_stores_order_is_not_attributed_to_this_store(shop, other_shop):
    with time_machine.travel(MONDAY, tick=False):
        send(shop)

    response = order(other_shop, occurred_at=(MONDAY + timedelta(hours=1)).isoformat())

    assert response.json()["attributed_to"] is None
    assert not TrackingEvent.objects.filter(kind="converted").exists()


def test_bad_order_is_a_400_naming_the_field(shop):
    response = order(shop, currency="euros")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["currency"]


def test_order_reported_after_its_checkout_event_is_a_repeat(shop):
    with time_machine.travel(MONDAY, tick=False):
        send(shop, cart_id="c-9")
    placed = (MONDAY + timedelta(hours=1)).isoformat()
    reported(
        shop,
        "/api/v1/events",
        {"type": "checkout_completed", "cart_id": "c-9", "user_id": "sam", "order_id": "A-77",
         "cart": {"value": "80.00", "currency": "EUR"}, "occurred_at": placed},
    )  # fmt: skip

    response = order(shop, order_id="A-77", value="80.00", occurred_at=placed)

    assert response.status_code == 200
    assert response.json()["source"] == "checkout"
    assert Conversion.objects.count() == 1
    assert TrackingEvent.objects.filter(kind="converted").count() == 1


def test_an_order_time_that_cannot_be_true_is_a_400_naming_occurred_at(shop, settings):
    settings.TRACKING_CLOCK_SKEW_SECONDS = 300
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "tracking_events": 30}
    with time_machine.travel(MONDAY, tick=False):
        send(shop)

        def posted_now(order_id, at):
            body = {"order_id": order_id, "user_id": "sam", "value": "100.00", "currency": "EUR",
                    "occurred_at": at.isoformat()}  # fmt: skip
            return shop.client.post("/api/v1/conversions", body, format="json")

        # Given a till whose clock drifts by minutes, the order counts.
        drifted = posted_now("o-1", MONDAY + timedelta(minutes=4))
        # When a time is hours ahead, or older than its rows are kept, it is refused.
        future = posted_now("o-2", MONDAY + timedelta(hours=2))
        stale = posted_now("o-3", MONDAY - timedelta(days=31))

    assert (drifted.status_code, future.status_code, stale.status_code) == (201, 400, 400)
    [why_future] = future.json()["error"]["fields"]["occurred_at"]
    [why_stale] = stale.json()["error"]["fields"]["occurred_at"]
    assert "in the future" in why_future
    assert "30 days" in why_stale
    assert list(Conversion.objects.values_list("order_id", flat=True)) == ["o-1"]
