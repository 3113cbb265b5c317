"""The demo seed shows the per-store admin (its marketer sees the demo store and nothing
else) and writes weeks of history for the dashboard that keep the models' invariants."""

import io
import itertools
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.conf import settings
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from campaigns.models import Campaign, Exposure
from interventions.models import (
    ALLOWED_SOURCES,
    Cart,
    DeliveryAttempt,
    Intervention,
    InterventionEvent,
    Status,
)
from notifications.models import Suppression
from stores.actions import do_create_store
from stores.models import Store, StoreMembership
from tracking import analytics
from tracking.models import Conversion, TrackingEvent

pytestmark = pytest.mark.django_db


def seed(*options: str) -> dict[str, Any]:
    out = io.StringIO()
    call_command("seed_demo", *options, stdout=out)
    return json.loads(out.getvalue().strip().splitlines()[-1])


def test_demo_marketer_sees_only_the_demo_store():
    do_create_store(name="Somebody Else's Shop")
    demo = seed("--no-history")
    client = Client()

    assert client.login(username=demo["marketer_user"], password=demo["marketer_password"])
    stores = client.get("/admin/stores/store/").content.decode()

    assert "Demo Store" in stores
    assert "Somebody Else" not in stores


def test_seeding_twice_keeps_one_membership_and_gives_the_superuser_none():
    seed("--no-history")
    demo = seed("--no-history")

    assert StoreMembership.objects.filter(user__username=demo["marketer_user"]).count() == 1
    assert not StoreMembership.objects.filter(user__username=demo["admin_user"]).exists()


def demo_store() -> Store:
    return Store.objects.get(name="Demo Store")


def test_seed_writes_weeks_of_history_across_channels_campaigns_and_outcomes():
    seed()
    store = demo_store()

    figures = analytics.performance(store, analytics.filters_for(store))
    channels = {
        row["channel"]: row
        for row in analytics.channels(store, analytics.filters_for(store))["channels"]
    }

    assert len(figures["series"]) >= 25, "a few weeks of sends, day by day"
    assert figures["totals"]["converted"] >= 50
    assert Decimal(figures["totals"]["revenue"]["EUR"]) > 1000
    assert set(channels) == {"email", "sms", "push", "websocket"}
    assert all(row["sent"] and row["converted"] for row in channels.values())
    assert channels["email"]["opened"]
    assert channels["email"]["clicked"]
    assert Campaign.objects.filter(store=store, status="running").count() == 4
    assert set(Exposure.objects.filter(campaign__store=store).values_list("arm", flat=True)) == {
        "plain",
        "ten_off",
    }
    assert Intervention.objects.filter(store=store, status=Status.SUPPRESSED).exists()
    assert Intervention.objects.filter(store=store, status=Status.FAILED).exists()
    assert DeliveryAttempt.objects.filter(
        intervention__store=store, outcome="transient_error"
    ).exists()
    assert Suppression.objects.filter(store=store, reason="bounced").exists()
    assert TrackingEvent.objects.filter(store=store, kind="opened", duplicate=True).exists()


def test_seeded_history_keeps_the_models_invariants():
    seed()
    store = demo_store()
    interventions = Intervention.objects.filter(store=store).prefetch_related("events")
    window = timedelta(hours=settings.ATTRIBUTION_WINDOW_HOURS)

    # Every status reached through legal transitions, in time order, timestamps to match.
    for intervention in interventions:
        path = list(intervention.events.all())
        assert path[0].from_status == ""
        for before, after in itertools.pairwise(path):
            assert after.from_status == before.to_status, intervention.pk
            assert after.from_status in ALLOWED_SOURCES[after.to_status], intervention.pk
            assert after.at >= before.at
        assert path[-1].to_status == intervention.status
        went_out = any(event.to_status == Status.SENT for event in path)
        assert (intervention.sent_at is not None) == went_out, intervention.pk
        assert (intervention.delivered_at is not None) == (intervention.status == Status.DELIVERED)
        assert intervention.created_at == path[0].at
    # Orders attributed by the engine itself: to a send within the window before them.
    orders = Conversion.objects.filter(store=store).select_related("intervention")
    assert orders.filter(intervention__isnull=True).exists(), "some orders owe nothing to a send"
    for order in orders.exclude(intervention=None):
        sent_at = order.intervention.sent_at
        assert sent_at <= order.occurred_at <= sent_at + window
        assert order.recovered_revenue <= order.value


def counts(store: Store) -> dict[str, int]:
    return {
        "interventions": Intervention.objects.filter(store=store).count(),
        "history": InterventionEvent.objects.filter(intervention__store=store).count(),
        "attempts": DeliveryAttempt.objects.filter(intervention__store=store).count(),
        "tracking": TrackingEvent.objects.filter(store=store).count(),
        "orders": Conversion.objects.filter(store=store).count(),
        "suppressions": Suppression.objects.filter(store=store).count(),
        "campaigns": Campaign.objects.filter(store=store).count(),
        "carts": Cart.objects.filter(store=store).count(),
    }


def test_seeding_again_the_same_day_changes_nothing():
    first = seed()
    written = counts(demo_store())

    again = seed()

    assert counts(demo_store()) == written
    assert first["history"]["interventions"] == written["interventions"]
    assert again["history"]["already_seeded_today"] is True


def test_a_history_seeded_days_ago_is_rebuilt_to_end_today():
    with time_machine.travel(timezone.now() - timedelta(days=5)):
        seed()
    store = demo_store()
    stale = counts(store)

    seed()

    rebuilt = counts(store)
    latest = Intervention.objects.filter(store=store).latest("created_at").created_at
    assert timezone.now() - latest < timedelta(hours=30)
    assert rebuilt["campaigns"] == stale["campaigns"]
    # Rebuilt, not added to: about the same amount of history, not twice as much.
    assert 0.8 < rebuilt["interventions"] / stale["interventions"] < 1.25
