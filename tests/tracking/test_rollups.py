"""Daily rollups: what beat keeps up to date equals a recount from scratch, and the
analytics endpoints, which read them, answer what the raw rows say."""

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.core.management.base import CommandError

from campaigns.models import Campaign
from interventions.actions.privacy import do_prune_expired
from interventions.actions.receipts import do_record_provider_event
from interventions.models import Cart, DeliveryAttempt, Intervention, Status
from tests.support.http_provider import REJECTED
from tests.tracking.conftest import SAM, reported, rollups_refreshed, send, track
from tracking import analytics
from tracking.dashboard import delivery_health
from tracking.models import (
    CartRollup,
    Conversion,
    DailyRollup,
    FailureRollup,
    RevenueRollup,
    SuppressionRollup,
    TrackingEvent,
)
from tracking.tasks import refresh_recent_rollups

pytestmark = pytest.mark.django_db(transaction=True)

# 13:00 UTC is 08:00 in New York, the store's time zone below.
MONDAY = datetime(2026, 3, 2, 13, 0, tzinfo=UTC)
TUESDAY = MONDAY + timedelta(days=1)
WEDNESDAY = MONDAY + timedelta(days=2)
# Monday 02:00 UTC is still Sunday in New York.
SUNDAY_NIGHT = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
RANGE = "since=2026-02-28&until=2026-03-07"


def order(session, order_id, user_id, value, currency, at):
    body = {"order_id": order_id, "user_id": user_id, "value": value, "currency": currency,
            "occurred_at": at.isoformat()}  # fmt: skip
    response = reported(session, "/api/v1/conversions", body)
    assert response.status_code in (200, 201), response.json()
    return response


def cart_event(session, type_, cart_id, user_id, **body):
    payload = {"type": type_, "cart_id": cart_id, "user_id": user_id, "user": SAM, **body}
    assert reported(session, "/api/v1/events", payload).status_code in (200, 202)


def at(moment, seconds=0):
    return (moment + timedelta(seconds=seconds)).isoformat()


def complaint(intervention_id, moment):
    """A spam complaint reported by the ESP's webhook after the send."""
    do_record_provider_event(channel="email", provider_message_id="", kind="complained",
                             source="email_webhook", occurred_at=moment,
                             intervention_id=intervention_id)  # fmt: skip


@pytest.fixture
def a_busy_week(shop, provider):
    """Sends over three New York days on two channels, with and without a campaign,
    suppressions, repeated opens and clicks, a repeated order report, an order without a
    touch, a send the provider refused, complaints, carts abandoned, and reports that
    arrive after beat already counted their day."""
    shop.store.timezone = "America/New_York"
    shop.store.save()
    Campaign.objects.create(
        store=shop.store, name="Likely buyers", trigger="prediction_high", channel="email"
    )
    with time_machine.travel(SUNDAY_NIGHT, tick=False):
        ned = send(shop, user_id="ned", cart_id="c-0")
    with time_machine.travel(MONDAY, tick=False):
        sam = send(shop, user_id="sam", cart_id="c-1")
        lea = send(shop, user_id="lea", cart_id="c-2", channel="sms",
                   user={"phone": "+33612345678"},
                   personalization={"body": "Your cart is waiting"})  # fmt: skip
        cart_event(shop, "cart_abandoned", "c-3", "kim")
        cart_event(shop, "prediction", "c-4", "joe", prediction={"probability": 0.1})
        cart_event(shop, "prediction", "c-5", "ann", prediction={"probability": 0.2})
        cart_event(shop, "prediction", "c-6", "kai", prediction={"probability": 0.9})
    with time_machine.travel(TUESDAY, tick=False):
        max_ = send(shop, user_id="max", cart_id="c-7", user={"email": "max@example.test"})
        provider.scripted = [REJECTED]
        send(shop, user_id="zoe", cart_id="c-9", user={"email": "zoe@example.test"})
    for seconds in (0, 20, 3600):  # the 20 s one is a repeat within the dedupe window
        track(shop, sam, "opened", occurred_at=at(MONDAY, seconds))
    for seconds in (120, 150):
        track(shop, sam, "clicked", occurred_at=at(MONDAY, seconds))
    track(shop, ned, "delivered")
    track(shop, ned, "opened", occurred_at=at(SUNDAY_NIGHT, 600))
    order(shop, "o-1", "sam", "100.00", "EUR", MONDAY + timedelta(hours=3))
    complaint(sam, MONDAY + timedelta(hours=2))
    # Beat counts Monday now; everything below arrives after it.
    rollups_refreshed(MONDAY + timedelta(hours=4))
    complaint(ned, MONDAY + timedelta(hours=5))
    with time_machine.travel(MONDAY + timedelta(hours=6), tick=False):
        cart_event(shop, "cart_abandoned", "c-8", "eve")
    track(shop, lea, "delivered")
    track(shop, sam, "opened", occurred_at=at(TUESDAY, 7200))  # a late, counted open
    kai = Intervention.objects.get(cart__external_id="c-6")
    track(shop, kai.pk, "opened", occurred_at=at(WEDNESDAY))
    order(shop, "o-1", "sam", "100.00", "EUR", MONDAY + timedelta(hours=3))  # repeated report
    order(shop, "o-2", "kai", "80.00", "USD", TUESDAY)
    order(shop, "o-3", "max", "40.00", "EUR", TUESDAY + timedelta(hours=1))
    order(shop, "o-4", "nobody", "25.00", "EUR", TUESDAY)  # no touch: not counted
    rollups_refreshed(WEDNESDAY + timedelta(hours=1))
    return {"sam": sam, "lea": lea, "ned": ned, "max": max_, "kai": str(kai.pk)}


def snapshot(store):
    def rows(model, *fields):
        return sorted(model.objects.filter(store=store).values_list(*fields), key=repr)

    key = ("day", "campaign_id", "variant", "channel")
    return (
        rows(
            DailyRollup,
            "cohort",
            *key,
            "interventions",
            "suppressed",
            "sent",
            "delivered",
            "opened",
            "clicked",
            "converted",
        ),
        rows(
            RevenueRollup,
            "cohort",
            *key,
            "currency",
            "converted",
            "revenue",
            "discount",
            "credited_orders",
            "credited",
            "credited_revenue",
        ),
        rows(SuppressionRollup, *key, "reason", "count"),
        rows(CartRollup, "day", "abandoned"),
        rows(FailureRollup, "day", "channel", "outcome", "reason", "count"),
    )


def raw_totals(store):
    """The headline figures straight from the raw rows, the way a person would count them."""
    sent = Intervention.objects.filter(store=store, sent_at__isnull=False)
    counted = TrackingEvent.objects.filter(store=store, duplicate=False)
    orders = Conversion.objects.filter(store=store, intervention__isnull=False)
    revenue = Counter()
    for conversion in orders:
        revenue[conversion.currency] += conversion.recovered_revenue
    return {
        "sent": sent.count(),
        "delivered": sent.filter(delivered_at__isnull=False).count(),
        "opened": counted.filter(kind="opened").values("intervention").distinct().count(),
        "clicked": counted.filter(kind="clicked").values("intervention").distinct().count(),
        "converted": orders.count(),
        "revenue": {currency: str(amount) for currency, amount in sorted(revenue.items())},
    }


def test_rollups_kept_by_beat_equal_a_recount_from_scratch(shop, a_busy_week):
    kept_by_beat = snapshot(shop.store)

    for model in (DailyRollup, RevenueRollup, SuppressionRollup, CartRollup, FailureRollup):
        model.objects.all().delete()
    # Run the week after, while retention still keeps every row (not at the real clock).
    with time_machine.travel(WEDNESDAY + timedelta(days=7), tick=False):
        call_command(
            "backfill_rollups", "--since=2026-02-25", "--until=2026-03-10", "--chunk-days=2"
        )

    assert all(kept_by_beat)
    assert snapshot(shop.store) == kept_by_beat


def test_endpoints_answer_what_the_raw_rows_say_late_reports_included(shop, a_busy_week):
    body = shop.client.get(f"/api/v1/analytics/performance?{RANGE}").json()

    expected = raw_totals(shop.store)
    totals = {name: body["totals"][name] for name in expected}
    assert totals == expected
    # Five sends and three attributed orders (not the one without a touch); the late opens (sam on Tuesday, kai on
    # Wednesday) count, the repeats do not.
    assert expected == {"sent": 5, "delivered": 2, "opened": 3, "clicked": 1, "converted": 3,
                        "revenue": {"EUR": "140.00", "USD": "80.00"}}  # fmt: skip


def test_days_are_the_stores_days(shop, a_busy_week):
    body = shop.client.get(f"/api/v1/analytics/performance?{RANGE}").json()

    assert [(row["period"], row["sent"], row["converted"]) for row in body["series"]] == [
        ("2026-03-01", 1, 0),  # Monday 02:00 UTC is Sunday evening in New York
        ("2026-03-02", 3, 2),
        ("2026-03-03", 1, 1),
    ]


def test_funnel_from_rollups_keeps_suppression_reasons_and_campaign_filter(shop, a_busy_week):
    campaign = Campaign.objects.get(store=shop.store)

    funnel = shop.client.get(f"/api/v1/analytics/conversion?{RANGE}").json()
    by_campaign = shop.client.get(
        f"/api/v1/analytics/conversion?{RANGE}&campaign={campaign.pk}"
    ).json()

    steps = {step["step"]: step for step in funnel["funnel"]}
    decided = Intervention.objects.filter(store=shop.store).count()
    assert (steps["decided"]["count"], steps["suppressed"]["count"]) == (decided, 2)
    assert steps["suppressed"]["reasons"] == [
        {"reason": "suppressed: probability N below threshold N", "count": 2}
    ]
    assert Intervention.objects.filter(status=Status.SUPPRESSED).count() == 2
    campaign_steps = {step["step"]: step["count"] for step in by_campaign["funnel"]}
    assert (campaign_steps["decided"], campaign_steps["sent"], campaign_steps["converted"]) == (
        3, 1, 1,
    )  # fmt: skip
    assert by_campaign["totals"]["revenue"] == {"USD": "80.00"}


def test_funnel_carts_and_delivery_failures_answer_what_the_raw_rows_say(shop, a_busy_week):
    funnel = shop.client.get(f"/api/v1/analytics/conversion?{RANGE}").json()["funnel"]
    health = delivery_health(shop.store, analytics.filters_for(
        shop.store, since=date(2026, 2, 28), until=date(2026, 3, 7)))  # fmt: skip

    abandoned = Cart.objects.filter(store=shop.store, abandoned_at__isnull=False).count()
    assert funnel[0] == {"step": "carts_abandoned", "count": abandoned}
    # Both complaints, the late one included; the refused send on its transport's code.
    assert health["failures"] == [
        {"reason": "esp_422", "kinds": {"permanent": 1}},
        {"reason": "complained", "kinds": {"after send": 2}},
    ]
    assert DeliveryAttempt.objects.filter(outcome="permanent_error").count() == 1


def test_embedded_mode_recounts_carts_and_failures_on_read(shop, provider, settings):
    settings.ROLLUP_REFRESH_ON_READ = True
    with time_machine.travel(MONDAY, tick=False):
        provider.scripted = [REJECTED]
        send(shop, user_id="zoe", cart_id="c-9", user={"email": "zoe@example.test"})
        cart_event(shop, "cart_abandoned", "c-3", "kim")
        filters = analytics.filters_for(shop.store)

        funnel = analytics.conversion_funnel(shop.store, filters)["funnel"]
        health = delivery_health(shop.store, filters)

    assert funnel[0] == {"step": "carts_abandoned", "count": 1}
    assert health["failures"] == [{"reason": "esp_422", "kinds": {"permanent": 1}}]


def test_rollups_lag_until_beat_runs_then_catch_up(shop):
    with time_machine.travel(MONDAY, tick=False):
        send(shop, user_id="sam", cart_id="c-1")
    url = "/api/v1/analytics/performance?since=2026-03-02&until=2026-03-02"

    before = shop.client.get(url).json()["totals"]["sent"]
    rollups_refreshed(MONDAY + timedelta(minutes=1))
    after = shop.client.get(url).json()["totals"]["sent"]

    assert (before, after) == (0, 1)


def test_backfill_rejects_a_reversed_range(shop):
    with pytest.raises(CommandError, match="--since"):
        call_command("backfill_rollups", "--since=2026-03-10", "--until=2026-03-01")


def test_backfill_keeps_the_rollups_of_days_retention_pruned_unless_forced(shop, settings):
    # given an open on Monday that beat counted, and tracking rows kept 30 days
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "tracking_events": 30}
    with time_machine.travel(MONDAY, tick=False):
        sam = send(shop, user_id="sam", cart_id="c-1")
    track(shop, sam, "opened", occurred_at=at(MONDAY, 60))
    rollups_refreshed(MONDAY + timedelta(hours=1))

    def monday_opens():
        return sum(
            DailyRollup.objects.filter(day="2026-03-02", cohort="sent").values_list(
                "opened", flat=True
            )
        )

    # when, 40 days later, retention has pruned the open and backfills run
    with time_machine.travel(MONDAY + timedelta(days=40), tick=False):
        do_prune_expired()
        with pytest.raises(CommandError, match="--since 2026-03-01 is before 2026-03-14"):
            call_command("backfill_rollups", "--since=2026-03-01")
        output = StringIO()
        call_command("backfill_rollups", stdout=output)
        refresh_recent_rollups.apply(kwargs={"days": 60})  # a daily pass set too long
        kept = monday_opens()
        call_command("backfill_rollups", "--since=2026-03-01", "--force", stdout=StringIO())
        forced = monday_opens()

    # then Monday's rollups keep the open, unless a backfill is forced to forget it
    assert not TrackingEvent.objects.exists()
    assert "skipping the days before 2026-03-14" in output.getvalue()
    assert (kept, forced) == (1, 0)


def test_an_open_weeks_later_shows_after_the_daily_pass_not_the_minutely_one(shop):
    with time_machine.travel(MONDAY, tick=False):
        email = send(shop, user_id="sam", cart_id="c-1")
    rollups_refreshed(MONDAY + timedelta(hours=1))
    weeks_later = MONDAY + timedelta(days=20)
    track(shop, email, "opened", occurred_at=weeks_later.isoformat())
    url = "/api/v1/analytics/performance?since=2026-03-02&until=2026-03-02"

    rollups_refreshed(weeks_later + timedelta(minutes=1))
    after_minutely = shop.client.get(url).json()["totals"]["opened"]
    with time_machine.travel(weeks_later + timedelta(hours=1), tick=False):
        refresh_recent_rollups.apply(kwargs={"days": 35})
    after_daily = shop.client.get(url).json()["totals"]["opened"]

    assert (after_minutely, after_daily) == (0, 1)
