"""Attribution models over one fixture: the shopper got an old send (outside the window),
then A, then B, then ordered (docs/analytics.md, "Attribution")."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from campaigns.models import Campaign
from notifications.transports.base import get_transport
from tests.tracking.conftest import SAM, reported, rollups_refreshed, send, track
from tracking.models import Conversion, TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PLACED = T0 + timedelta(hours=30)


@pytest.fixture
def touches(shop):
    """old: 80 h before the order; a: 30 h before; b: 4 h before. Returns their ids."""
    shop.store.channel_caps_per_day = {}
    shop.store.save()
    sent = {}
    for name, at, cart in (("old", T0 - timedelta(hours=50), "c-0"), ("a", T0, "c-1"),
                           ("b", T0 + timedelta(hours=26), "c-2")):  # fmt: skip
        with time_machine.travel(at, tick=False):
            sent[name] = send(shop, cart_id=cart)
    return sent


def order(shop):
    response = reported(
        shop,
        "/api/v1/conversions",
        {"order_id": "o-1", "user_id": "sam", "value": "100.00", "currency": "EUR",
         "occurred_at": PLACED.isoformat()},
    )  # fmt: skip
    assert response.status_code == 201, response.json()
    return response.json()


def credited(body):
    return [(c["intervention_id"], c["weight"], c["recovered_revenue"]) for c in body["credits"]]


def converted_rows():
    return sorted(
        (str(e.intervention_id), str(e.revenue))
        for e in TrackingEvent.objects.filter(kind="converted")
    )


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("last_touch", [("b", "1.0000", "100.00")]),
        ("first_touch", [("a", "1.0000", "100.00")]),
        ("linear", [("b", "0.5000", "50.00"), ("a", "0.5000", "50.00")]),
        ("any_exposure", [("b", "1.0000", "100.00"), ("a", "1.0000", "100.00")]),
    ],
)
def test_each_model_credits_the_touches_in_the_window(shop, touches, model, expected):
    # given the store's model
    shop.store.attribution_model = model
    shop.store.save()

    # when the order comes in
    body = order(shop)

    # then the touches in the window are credited as the model says, the old send never,
    # and the order is counted once, on the first credited intervention
    want = [(touches[name], weight, revenue) for name, weight, revenue in expected]
    assert body["attribution_model"] == model
    assert credited(body) == want
    assert body["attributed_to"] == want[0][0]
    assert converted_rows() == sorted((i, r) for i, _, r in want)
    assert Conversion.objects.count() == 1


def test_any_exposure_counts_the_order_once_in_the_figures(shop, touches):
    shop.store.attribution_model = "any_exposure"
    shop.store.save()
    order(shop)
    rollups_refreshed(PLACED)

    with time_machine.travel(PLACED, tick=False):
        totals = shop.client.get(
            "/api/v1/analytics/performance", {"since": "2026-02-25", "until": "2026-03-04"}
        ).json()["totals"]

    assert (totals["converted"], totals["revenue"]) == (1, {"EUR": "100.00"})


def test_a_shorter_store_window_leaves_the_earlier_touch_out(shop, touches):
    shop.store.attribution_model = "first_touch"
    shop.store.attribution_window_hours = 24
    shop.store.save()

    body = order(shop)

    assert credited(body) == [(touches["b"], "1.0000", "100.00")]


def test_a_campaigns_model_wins_when_its_send_is_the_last_touch(shop):
    # given a store on last touch and a campaign on linear that sent both touches
    shop.store.channel_caps_per_day = {}
    shop.store.save()
    Campaign.objects.create(
        store=shop.store, name="Linear", trigger="cart_abandoned", channel="email",
        attribution_model="linear",
    )  # fmt: skip
    sent = []
    for at, cart in ((T0, "c-1"), (T0 + timedelta(hours=26), "c-2")):
        with time_machine.travel(at, tick=False):
            response = shop.client.post(
                "/api/v1/events",
                {"type": "cart_abandoned", "cart_id": cart, "user_id": "sam", "user": SAM},
                format="json",
            )
            sent.extend(i["id"] for i in response.json()["interventions"])
    assert len(sent) == 2

    # when the order comes in
    body = order(shop)

    # then the campaign's model shared it
    assert body["attribution_model"] == "linear"
    assert {c[0] for c in credited(body)} == set(sent)


@pytest.fixture
def websocket_logged(settings):
    settings.NOTIFICATION_TRANSPORTS = {**settings.NOTIFICATION_TRANSPORTS, "websocket": "log"}
    get_transport.cache_clear()
    yield
    get_transport.cache_clear()


@pytest.mark.parametrize("acked", [False, True])
def test_a_websocket_message_touches_only_once_a_storefront_acked_it(shop, websocket_logged, acked):
    # given an email, then a WebSocket message published later
    with time_machine.travel(T0, tick=False):
        email = send(shop, cart_id="c-1")
    with time_machine.travel(T0 + timedelta(hours=26), tick=False):
        published = send(shop, cart_id="c-2", channel="websocket")
        if acked:
            track(shop, published, "delivered")

    # when the shopper orders
    body = order(shop)

    # then the WebSocket message is the last touch only if a storefront showed it
    assert body["attributed_to"] == (published if acked else email)
