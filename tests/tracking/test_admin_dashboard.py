"""The admin index is the marketer's dashboard: one store's figures at a time, only a store
the user may read, with the data handed to the charts as JSON (json_script)."""

import json
import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import Client

from realtime import registry
from realtime.redis_clients import sync_redis
from stores.actions import do_grant_store_membership
from stores.models import StoreRole
from tests.support.processes import free_port
from tracking import analytics
from tracking.rollups import do_refresh_recent_rollups

# Sends happen on commit.
pytestmark = pytest.mark.django_db(transaction=True)


def campaign_sends(session, campaign_name, user_id, cart_id, value):
    """A launched campaign answers the shopper's abandoned cart by email."""
    client = session.client
    campaign = client.post(
        "/api/v1/campaigns",
        {"name": campaign_name, "trigger": "cart_abandoned", "channel": "email"},
        format="json",
    ).json()
    assert client.post(f"/api/v1/campaigns/{campaign['id']}/launch").status_code == 200
    event = client.post(
        "/api/v1/events",
        {
            "type": "cart_abandoned",
            "cart_id": cart_id,
            "user_id": user_id,
            "user": {"email": f"{user_id}@example.test"},
            "cart": {"value": value, "currency": "EUR"},
        },
        format="json",
    )
    assert event.status_code == 202, event.json()
    return campaign


def ordered(session, user_id, value):
    order = session.client.post(
        "/api/v1/conversions",
        {"order_id": f"{user_id}-order", "user_id": user_id, "value": value, "currency": "EUR"},
        format="json",
    )
    assert order.json()["attributed_to"], order.json()
    return order.json()


def recovered_order(session, campaign_name, user_id, value):
    """A launched campaign, an abandoned cart it answers by email, and the order after it."""
    campaign_sends(session, campaign_name, user_id, f"{user_id}-cart", value)
    ordered(session, user_id, value)


@pytest.fixture
def two_stores(shop, other_shop):
    other_shop.store.quiet_hours_start = other_shop.store.quiet_hours_end = None
    other_shop.store.save()
    recovered_order(shop, "Acme comeback", "sam", "59.90")
    recovered_order(other_shop, "Rival secret sale", "rita", "777.77")
    do_refresh_recent_rollups()  # what beat does every minute: the figures read rollups
    return shop.store, other_shop.store


def admin_client(username, superuser=False, **memberships):
    if superuser:
        user = User.objects.create_superuser(username, password="x")
    else:
        user = User.objects.create_user(username, is_staff=True)
    for store, role in memberships.values():
        do_grant_store_membership(user, store, role)
    client = Client()
    client.force_login(user)
    return client


def embedded_figures(page) -> dict:
    """What the charts read: the json_script element, and nothing else."""
    found = re.search(
        r'<script id="dashboard-figures" type="application/json">(.*?)</script>', page, re.S
    )
    assert found, "no figures embedded"
    return json.loads(found.group(1))


def test_marketer_lands_on_their_store_figures_and_sees_nothing_of_another_store(two_stores):
    acme, rival = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))

    response = marketer.get("/admin/")

    page = response.content.decode()
    figures = embedded_figures(page)
    assert response.status_code == 200
    assert figures["store"]["id"] == str(acme.pk)
    assert figures["totals"]["converted"] == 1
    assert figures["totals"]["revenue"] == {"EUR": "59.90"}
    assert [row["name"] for row in figures["campaigns"]] == ["Acme comeback"]
    for leak in ("Rival", "777.77", str(rival.pk)):
        assert leak not in page


def test_marketer_asking_for_another_store_gets_a_404(two_stores):
    acme, rival = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))

    page = marketer.get(f"/admin/?store={rival.pk}")
    live = marketer.get(f"/admin/dashboard/live?store={rival.pk}")

    assert page.status_code == 404
    assert live.status_code == 404
    assert "777.77" not in page.content.decode()


def test_superuser_picks_any_store(two_stores):
    acme, rival = two_stores
    superuser = admin_client("root", superuser=True)

    page = superuser.get(f"/admin/?store={rival.pk}&days=7").content.decode()

    figures = embedded_figures(page)
    assert figures["store"]["id"] == str(rival.pk)
    assert figures["totals"]["revenue"] == {"EUR": "777.77"}
    assert f'<option value="{acme.pk}">Acme Outdoor</option>' in page
    assert f'<option value="{rival.pk}" selected>Rival Goods</option>' in page


def test_the_figures_are_the_analytics_endpoints_numbers(two_stores):
    acme, _ = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.VIEWER))

    figures = embedded_figures(marketer.get("/admin/?days=30").content.decode())

    filters = analytics.filters_for(acme)
    api = json.loads(json.dumps(analytics.performance(acme, filters)["totals"], default=str))
    assert figures["totals"] == api
    funnel = json.loads(json.dumps(analytics.conversion_funnel(acme, filters)["funnel"]))
    assert figures["funnel"] == funnel
    assert [row["channel"] for row in figures["channels"]] == ["email"]


def test_bad_query_is_a_400_naming_the_field(two_stores):
    acme, _ = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))

    days = marketer.get("/admin/?days=12")
    store = marketer.get("/admin/?store=not-a-uuid")

    assert days.status_code == 400
    assert days.json()["error"]["fields"].keys() == {"days"}
    assert store.status_code == 400
    assert store.json()["error"]["message"].startswith("store:")


def test_staff_without_a_store_sees_no_figures(two_stores):
    nobody = admin_client("nobody")

    page = nobody.get("/admin/").content.decode()

    assert "dashboard-figures" not in page
    assert "No store to show figures for" in page


def test_live_connections_are_the_registrys_for_the_chosen_store_only(two_stores):
    acme, rival = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))
    register = async_to_sync(registry.register)
    register(str(acme.pk), "user", "sam", "specific.test!acme-1", 100)
    register(str(rival.pk), "user", "rita", "specific.test!rival-1", 100)
    register(str(rival.pk), "store", "", "specific.test!rival-2", 100)
    try:
        live = marketer.get("/admin/dashboard/live").json()["live"]
        figures = embedded_figures(marketer.get("/admin/").content.decode())
    finally:
        for store, user, name in (
            (acme, "sam", "specific.test!acme-1"),
            (rival, "rita", "specific.test!rival-1"),
            (rival, "", "specific.test!rival-2"),
        ):
            async_to_sync(registry.unregister)(str(store.pk), user, name)

    assert live["total"] == 1
    assert live["scopes"] == {"user": 1}
    assert figures["live"]["total"] == 1


def test_registry_down_still_shows_the_rest(two_stores, settings):
    acme, _ = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sync_redis.cache_clear()
    try:
        response = marketer.get("/admin/")
    finally:
        sync_redis.cache_clear()

    figures = embedded_figures(response.content.decode())
    assert response.status_code == 200
    assert figures["live"] is None
    assert figures["totals"]["converted"] == 1


def test_the_page_loads_nothing_from_another_host(two_stores):
    acme, _ = two_stores
    marketer = admin_client("mia", acme=(acme, StoreRole.MARKETER))

    page = marketer.get("/admin/").content.decode()

    assets = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', page)
    assert "/static/tracking/vendor/chart.umd.min.js" in assets
    assert "/static/tracking/dashboard.js" in assets
    assert all(asset.startswith("/") and not asset.startswith("//") for asset in assets), assets
    # The figures reach the scripts as JSON only: no inline script carries data.
    inline = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", page)
    assert inline == [' id="dashboard-figures" type="application/json"']


def test_a_campaign_name_cannot_break_out_of_the_embedded_json(shop):
    recovered_order(shop, "</script><script>alert(1)</script>", "sam", "10.00")
    do_refresh_recent_rollups()
    marketer = admin_client("mia", acme=(shop.store, StoreRole.MARKETER))

    page = marketer.get("/admin/").content.decode()

    assert "<script>alert(1)" not in page
    assert [row["name"] for row in embedded_figures(page)["campaigns"]] == [
        "</script><script>alert(1)</script>"
    ]


def test_top_campaigns_rank_a_half_credited_order_below_a_whole_one(shop):
    # Given a linear store: two campaigns reminded sam in turn (half his order each),
    # a third reminded max alone (his whole order)
    shop.store.attribution_model = "linear"
    shop.store.channel_caps_per_day = {}
    shop.store.frequency_cap_per_hour = 10
    shop.store.save()
    for name, user_id, cart_id in (
        ("Half A", "sam", "sam-1"),
        ("Half B", "sam", "sam-2"),
        ("Whole C", "max", "max-1"),
    ):
        campaign = campaign_sends(shop, name, user_id, cart_id, "40.00")
        # One campaign running at a time, so each event goes to the one named.
        assert shop.client.post(f"/api/v1/campaigns/{campaign['id']}/pause").status_code == 200
    assert len(ordered(shop, "sam", "40.00")["credits"]) == 2
    ordered(shop, "max", "40.00")
    do_refresh_recent_rollups()
    marketer = admin_client("mia", acme=(shop.store, StoreRole.MARKETER))

    # When the marketer opens the dashboard
    figures = embedded_figures(marketer.get("/admin/").content.decode())

    # Then the whole order's campaign leads, though each campaign converted one order
    assert [(row["name"], row["converted"], row["credited"]) for row in figures["campaigns"]] == [
        ("Whole C", 1, "1.0000"),
        ("Half A", 1, "0.5000"),
        ("Half B", 1, "0.5000"),
    ]
