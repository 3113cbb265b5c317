"""GET /api/v1/analytics/*: what the store reads about its interventions."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign
from tests.tracking.conftest import SAM, reported, rollups_refreshed, send, track

pytestmark = pytest.mark.django_db(transaction=True)

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
TUESDAY = MONDAY + timedelta(days=1)
WEEK = "since=2026-03-02&until=2026-03-08"


def order(session, user_id, value, currency, at):
    body = {"order_id": f"{user_id}-{value}", "user_id": user_id, "value": value,
            "currency": currency, "occurred_at": at.isoformat()}  # fmt: skip
    assert reported(session, "/api/v1/conversions", body).status_code == 201


@pytest.fixture
def two_days_of_sends(shop):
    """Monday: an email to sam (delivered, opened three times, once as a repeat, clicked, an
    order of 100 EUR) and an SMS to lea (delivered). Tuesday: an email to max (an order
    of 50 USD)."""
    with time_machine.travel(MONDAY, tick=False):
        sam = send(shop, user_id="sam", cart_id="c-1")
        lea = send(shop, user_id="lea", cart_id="c-2", channel="sms",
                   user={"phone": "+33612345678"})  # fmt: skip
    with time_machine.travel(TUESDAY, tick=False):
        send(shop, user_id="max", cart_id="c-3", user={"email": "max@example.test"})
    for intervention in (sam, lea):
        track(shop, intervention, "delivered")
    for seconds in (0, 20, 3600):
        track(shop, sam, "opened", occurred_at=(MONDAY + timedelta(seconds=seconds)).isoformat())
    track(shop, sam, "clicked", occurred_at=(MONDAY + timedelta(minutes=2)).isoformat())
    order(shop, "sam", "100.00", "EUR", MONDAY + timedelta(hours=3))
    order(shop, "max", "50.00", "USD", TUESDAY + timedelta(hours=3))
    rollups_refreshed(TUESDAY + timedelta(hours=4))


def figures(row, *names):
    return tuple(row[name] for name in names)


COUNTS = ("sent", "delivered", "opened", "clicked", "converted", "revenue")


def test_performance_by_day_counts_opens_once_and_revenue_per_currency(shop, two_days_of_sends):
    response = shop.client.get(f"/api/v1/analytics/performance?{WEEK}")

    assert response.status_code == 200
    body = response.json()
    assert [(row["period"], *figures(row, *COUNTS)) for row in body["series"]] == [
        ("2026-03-02", 2, 2, 1, 1, 1, {"EUR": "100.00"}),
        ("2026-03-03", 1, 0, 0, 0, 1, {"USD": "50.00"}),
    ]
    totals = body["totals"]
    assert figures(totals, *COUNTS) == (3, 2, 1, 1, 2, {"EUR": "100.00", "USD": "50.00"})
    assert figures(totals, "open_rate", "conversion_rate") == (0.3333, 0.6667)
    assert totals["revenue_per_send"] == {"EUR": "33.33", "USD": "16.67"}


def test_performance_by_week_and_filtered_by_channel(shop, two_days_of_sends):
    weekly = shop.client.get(f"/api/v1/analytics/performance?{WEEK}&interval=week").json()
    sms = shop.client.get(f"/api/v1/analytics/performance?{WEEK}&channel=sms").json()
    monday_only = shop.client.get(
        "/api/v1/analytics/performance?since=2026-03-02&until=2026-03-02"
    ).json()

    assert [(r["period"], r["sent"]) for r in weekly["series"]] == [("2026-03-02", 3)]
    assert figures(sms["totals"], *COUNTS) == (1, 1, 0, 0, 0, {})
    assert figures(monday_only["totals"], "sent", "converted") == (2, 1)


def test_channels_side_by_side(shop, two_days_of_sends):
    body = shop.client.get(f"/api/v1/analytics/channels?{WEEK}").json()

    assert [(row["channel"], *figures(row, *COUNTS)) for row in body["channels"]] == [
        ("email", 2, 1, 1, 1, 2, {"EUR": "100.00", "USD": "50.00"}),
        ("sms", 1, 1, 0, 0, 0, {}),
    ]
    assert body["totals"]["sent"] == 3


def test_another_store_sees_none_of_it(other_shop, two_days_of_sends):
    body = other_shop.client.get(f"/api/v1/analytics/performance?{WEEK}").json()

    assert body["series"] == []
    assert figures(body["totals"], *COUNTS) == (0, 0, 0, 0, 0, {})


def test_funnel_from_abandoned_carts_to_orders_with_suppression_reasons(shop):
    Campaign.objects.create(
        store=shop.store, name="Likely buyers", trigger="prediction_high", channel="email"
    )

    def event(type_, cart_id, **body):
        payload = {"type": type_, "cart_id": cart_id, "user_id": "sam", "user": SAM, **body}
        shop.client.post("/api/v1/events", payload, format="json")

    with time_machine.travel(MONDAY, tick=False):
        event("cart_abandoned", "c-1")
        event("prediction", "c-2", prediction={"probability": 0.1})
        event("prediction", "c-3", prediction={"probability": 0.2})
        event("prediction", "c-4", prediction={"probability": 0.9})
    rollups_refreshed(MONDAY + timedelta(hours=1))

    body = shop.client.get(f"/api/v1/analytics/conversion?{WEEK}").json()

    steps = {step["step"]: step for step in body["funnel"]}
    assert [step["step"] for step in body["funnel"]] == [
        "carts_abandoned", "decided", "suppressed", "sent", "delivered", "opened", "clicked",
        "converted",
    ]  # fmt: skip
    assert figures({k: v["count"] for k, v in steps.items()}, "carts_abandoned", "decided",
                   "suppressed", "sent") == (1, 3, 2, 1)  # fmt: skip
    assert steps["suppressed"]["reasons"] == [
        {"reason": "suppressed: probability N below threshold N", "count": 2}
    ]
    assert body["totals"]["sent"] == 1


def test_bad_filter_is_a_400_naming_it(shop):
    response = shop.client.get("/api/v1/analytics/channels?since=2026-03-09&until=2026-03-02")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["until"]
