"""The analytics figures as CSV (API and admin), and what each channel cost per order."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client

from stores.actions import do_grant_store_membership
from stores.models import StoreRole
from tests.tracking.conftest import reported, rollups_refreshed, send, track
from tracking.csv_export import render_csv, table_of

pytestmark = pytest.mark.django_db(transaction=True)

MONDAY = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WEEK = "since=2026-03-02&until=2026-03-08"


@pytest.fixture
def a_monday(shop):
    """Two emails and an SMS on Monday; one email opened and turned into a 100 EUR order,
    the SMS into a 30 EUR one."""
    with time_machine.travel(MONDAY, tick=False):
        sam = send(shop, user_id="sam", cart_id="c-1")
        send(shop, user_id="max", cart_id="c-2")
        send(shop, user_id="lea", cart_id="c-3", channel="sms", user={"phone": "+33612345678"})
    track(shop, sam, "opened", occurred_at=MONDAY.isoformat())
    for order_id, user_id, value in (("o-1", "sam", "100.00"), ("o-2", "lea", "30.00")):
        body = {"order_id": order_id, "user_id": user_id, "value": value, "currency": "EUR",
                "occurred_at": (MONDAY + timedelta(hours=1)).isoformat()}  # fmt: skip
        assert reported(shop, "/api/v1/conversions", body).status_code == 201
    rollups_refreshed(MONDAY + timedelta(hours=2))


def parse(response):
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_performance_csv_has_the_json_figures(shop, a_monday):
    as_json = shop.client.get(f"/api/v1/analytics/performance?{WEEK}").json()
    response = shop.client.get(f"/api/v1/analytics/performance?{WEEK}&format=csv")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    day, total = parse(response)
    assert (day["period"], day["sent"], day["opened"], day["converted"]) == (
        "2026-03-02",
        "3",
        "1",
        "2",
    )
    assert (day["revenue_EUR"], day["revenue_per_send_EUR"]) == ("130.00", "43.33")
    assert total["period"] == "total"
    assert total["revenue_EUR"] == as_json["totals"]["revenue"]["EUR"]
    assert float(total["open_rate"]) == as_json["totals"]["open_rate"]


def test_csv_is_store_scoped(other_shop, a_monday):
    response = other_shop.client.get(f"/api/v1/analytics/channels?{WEEK}&format=csv")

    assert response.status_code == 200
    [total] = parse(response)
    assert (total["channel"], total["sent"], total["converted"]) == ("total", "0", "0")


def test_funnel_csv_and_a_bad_filter_in_csv(shop, a_monday):
    funnel = shop.client.get(f"/api/v1/analytics/conversion?{WEEK}&format=csv")
    bad = shop.client.get(
        "/api/v1/analytics/conversion?since=2026-03-09&until=2026-03-02&format=csv"
    )

    steps = {row["step"]: row["count"] for row in parse(funnel)}
    assert (steps["decided"], steps["sent"], steps["converted"]) == ("3", "3", "2")
    assert bad.status_code == 400
    assert "until" in bad.content.decode()


def test_cells_a_spreadsheet_would_run_are_defused():
    report = {"funnel": [{"step": "suppressed", "count": 1, "reasons": [
        {"reason": '=HYPERLINK("http://evil.test","x")', "count": 1},
        {"reason": "+1", "count": 2}, {"reason": "-1", "count": 3}, {"reason": "@SUM(A1)", "count": 4},
        {"reason": 'quiet, "hours"', "count": 5},
    ]}]}  # fmt: skip

    rows = list(csv.reader(io.StringIO(render_csv(table_of(report)))))

    assert [row[1] for row in rows[2:]] == [
        "'=HYPERLINK(\"http://evil.test\",\"x\")", "'+1", "'-1", "'@SUM(A1)", 'quiet, "hours"',
    ]  # fmt: skip


def test_channels_report_cost_per_conversion_from_settings(shop, a_monday, settings):
    settings.CHANNEL_COSTS = {"email": "0.002", "sms": "0.05", "push": "0", "websocket": "0"}
    settings.CHANNEL_COST_CURRENCY = "EUR"

    body = shop.client.get(f"/api/v1/analytics/channels?{WEEK}").json()

    costs = {row["channel"]: (row["cost"], row["cost_per_conversion"]) for row in body["channels"]}
    assert costs == {
        "email": ({"EUR": "0.0040"}, {"EUR": "0.0040"}),  # 2 sends, 1 order
        "sms": ({"EUR": "0.0500"}, {"EUR": "0.0500"}),
    }


def test_channels_csv_total_row_has_the_cost_of_every_send(shop, a_monday, settings):
    settings.CHANNEL_COSTS = {"email": "0.002", "sms": "0.05", "push": "0", "websocket": "0"}
    settings.CHANNEL_COST_CURRENCY = "EUR"

    rows = parse(shop.client.get(f"/api/v1/analytics/channels?{WEEK}&format=csv"))
    totals = shop.client.get(f"/api/v1/analytics/channels?{WEEK}").json()["totals"]

    email, sms, total = rows
    assert (email["cost_EUR"], sms["cost_EUR"]) == ("0.0040", "0.0500")
    # The rows' costs added up, over the two orders counted once each.
    assert (total["cost_EUR"], total["cost_per_conversion_EUR"]) == ("0.0540", "0.0270")
    assert totals["cost"] == {"EUR": "0.0540"}


def admin_member(store, role, name):
    user = get_user_model().objects.create_user(name, is_staff=True)
    do_grant_store_membership(user, store, role)
    client = Client()
    client.force_login(user)
    return client


def test_admin_csv_for_a_member_and_a_404_for_anyone_else(shop, other_shop, a_monday):
    viewer = admin_member(shop.store, StoreRole.VIEWER, "viewer")
    stranger = admin_member(other_shop.store, StoreRole.OWNER, "stranger")
    url = f"/admin/analytics/performance.csv?store={shop.store.pk}&{WEEK}"

    ours = viewer.get(url)
    theirs = stranger.get(url)
    stores_page = viewer.get("/admin/stores/store/")

    assert ours.status_code == 200
    assert parse(ours)[-1]["revenue_EUR"] == "130.00"
    assert theirs.status_code == 404
    assert f"/admin/analytics/performance.csv?store={shop.store.pk}" in stores_page.content.decode()
