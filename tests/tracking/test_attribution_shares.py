"""The analytics figures follow the attribution model (docs/analytics.md, "Shares"): one
shopper got an email, then an SMS two hours later, then ordered for 100 EUR."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command

from tests.tracking.conftest import reported, rollups_refreshed, send
from tests.tracking.test_rollups import snapshot
from tracking import analytics
from tracking.models import RevenueRollup

pytestmark = pytest.mark.django_db(transaction=True)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
PLACED = T0 + timedelta(hours=4)
WEEK = {"since": "2026-03-02", "until": "2026-03-08"}


@pytest.fixture
def email_then_sms(shop):
    shop.store.channel_caps_per_day = {}
    shop.store.save()
    with time_machine.travel(T0, tick=False):
        send(shop, cart_id="c-1", channel="email")
    with time_machine.travel(T0 + timedelta(hours=2), tick=False):
        send(shop, cart_id="c-2", channel="sms", user={"phone": "+33612345678"})


def order_under(shop, model):
    shop.store.attribution_model = model
    shop.store.save()
    body = {"order_id": "o-1", "user_id": "sam", "value": "100.00", "currency": "EUR",
            "occurred_at": PLACED.isoformat()}  # fmt: skip
    response = reported(shop, "/api/v1/conversions", body)
    assert response.status_code == 201, response.json()
    assert len(response.json()["credits"]) == (2 if model in ("linear", "any_exposure") else 1)
    rollups_refreshed(PLACED + timedelta(minutes=5))


def get(shop, path, **params):
    with time_machine.travel(PLACED + timedelta(minutes=5), tick=False):
        response = shop.client.get(f"/api/v1/analytics/{path}", {**WEEK, **params})
    assert response.status_code == 200, response.json()
    return response.json()


def per_channel(body):
    return {
        row["channel"]: (row["converted"], row["credited"], row["revenue"])
        for row in body["channels"]
    }


NOTHING = (0, "0.0000", {})


@pytest.mark.parametrize(
    ("model", "email", "sms"),
    [
        ("last_touch", NOTHING, (1, "1.0000", {"EUR": "100.00"})),
        ("first_touch", (1, "1.0000", {"EUR": "100.00"}), NOTHING),
        ("linear", (1, "0.5000", {"EUR": "50.00"}), (1, "0.5000", {"EUR": "50.00"})),
        ("any_exposure", (1, "1.0000", {"EUR": "100.00"}), (1, "1.0000", {"EUR": "100.00"})),
    ],
)
def test_channels_get_the_models_shares_and_totals_count_the_order_once(
    shop, email_then_sms, model, email, sms
):
    # given an email and an SMS before one order, under the store's model
    order_under(shop, model)

    # when the marketer compares channels
    body = get(shop, "channels")

    # then each channel shows its share of the order, and the headline counts it once
    assert per_channel(body) == {"email": email, "sms": sms}
    totals = body["totals"]
    assert (totals["converted"], totals["credited"], totals["revenue"]) == (
        1,
        "1.0000",
        {"EUR": "100.00"},
    )


@pytest.mark.parametrize(
    ("model", "sms_slice"),
    [
        ("last_touch", (1, "1.0000", {"EUR": "100.00"})),
        ("first_touch", NOTHING),
        ("linear", (1, "0.5000", {"EUR": "50.00"})),
        ("any_exposure", (1, "1.0000", {"EUR": "100.00"})),
    ],
)
def test_the_performance_series_adds_up_to_the_order_unless_sliced(
    shop, email_then_sms, model, sms_slice
):
    # given one order after two touches
    order_under(shop, model)

    # when the store reads its performance, whole and for the SMS channel only
    whole = get(shop, "performance")
    sms_only = get(shop, "performance", channel="sms")

    # then the whole series counts the order once, on the day of its primary send, and the
    # SMS slice shows the SMS's share; both headlines count the order at most once
    (day,) = whole["series"]
    assert (day["converted"], day["credited"], day["revenue"]) == (1, "1.0000", {"EUR": "100.00"})
    assert whole["totals"]["converted"] == 1
    sliced = [(r["converted"], r["credited"], r["revenue"]) for r in sms_only["series"]]
    assert sliced == [sms_slice]
    assert sms_only["totals"]["converted"] == (1 if model != "first_touch" else 0)


def test_cost_per_conversion_is_over_the_shares(shop, email_then_sms, settings):
    # given SMS at 0.10 EUR a message and an order linear splits between email and SMS
    settings.CHANNEL_COSTS = {**settings.CHANNEL_COSTS, "sms": "0.10"}
    settings.CHANNEL_COST_CURRENCY = "EUR"
    order_under(shop, "linear")

    # when the marketer compares channels
    sms = next(row for row in get(shop, "channels")["channels"] if row["channel"] == "sms")

    # then the SMS paid 0.10 for half an order: 0.20 per order
    assert sms["cost_per_conversion"] == {"EUR": "0.2000"}
    assert sms["conversion_rate"] == 0.5


def test_campaign_breakdown_follows_the_model_too(shop, email_then_sms):
    # given an order any exposure credits to both sends (neither from a campaign)
    order_under(shop, "any_exposure")

    # when the dashboard reads the per-campaign figures
    filters = analytics.filters_for(shop.store, since=PLACED.date(), until=PLACED.date())
    report = analytics.campaigns(shop.store, filters)

    # then the "no campaign" row holds both exposures and the totals the order once
    (row,) = report["campaigns"]
    assert (row["campaign"], row["converted"], row["credited"], row["revenue"]) == (
        None,
        2,
        "2.0000",
        {"EUR": "200.00"},
    )
    assert (report["totals"]["converted"], report["totals"]["revenue"]) == (1, {"EUR": "100.00"})


def test_shares_kept_by_beat_equal_a_recount_from_scratch(shop, email_then_sms):
    # given beat's rollups of an order linear split between two sends
    order_under(shop, "linear")
    kept_by_beat = snapshot(shop.store)

    # when they are rebuilt from the raw rows
    RevenueRollup.objects.all().delete()
    with time_machine.travel(PLACED + timedelta(days=7), tick=False):
        call_command("backfill_rollups", "--since=2026-03-01", "--until=2026-03-03")

    # then the shares come back as they were
    assert snapshot(shop.store) == kept_by_beat
    assert sorted(
        RevenueRollup.objects.filter(cohort="sent").values_list("channel", "credited")
    ) == [("email", Decimal("0.5000")), ("sms", Decimal("0.5000"))]
