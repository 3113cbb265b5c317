"""Marketers run a campaign through its lifecycle over the API; every change is audited."""

import pytest
import time_machine

from campaigns.actions.lifecycle import CALENDAR_ACTOR
from campaigns.models import Campaign, CampaignChange, CampaignStatus, Exposure
from campaigns.tasks import follow_campaign_calendar
from stores.actions import do_upsert_shopper

pytestmark = pytest.mark.django_db

SPLIT = [{"key": "control", "weight": 50}, {"key": "ten_off", "weight": 50, "discount_percent": 10}]


def create(shop, **fields):
    body = {"name": "Comeback", "trigger": "cart_abandoned", "channel": "websocket", **fields}
    response = shop.client.post("/api/v1/campaigns", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def command(shop, campaign_id, name):
    return shop.client.post(f"/api/v1/campaigns/{campaign_id}/{name}")


def test_a_new_campaign_is_a_draft_that_fires_only_once_launched(shop):
    created = create(shop)

    launched = command(shop, created["id"], "launch")
    paused = command(shop, created["id"], "pause")
    resumed = command(shop, created["id"], "resume")

    assert (created["status"], created["is_active"]) == ("draft", False)
    assert (launched.json()["status"], launched.json()["is_active"]) == ("running", True)
    assert launched.json()["launched_at"] is not None
    assert paused.json()["status"] == "paused"
    assert resumed.json()["status"] == "running"


def test_illegal_transition_is_a_conflict_naming_both_statuses(shop):
    created = create(shop)

    refused = command(shop, created["id"], "pause")

    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "conflict"
    message = refused.json()["error"]["message"]
    assert "draft" in message
    assert "paused" in message
    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.DRAFT


def test_launch_with_a_future_start_schedules_it(shop):
    created = create(shop, starts_at="2100-01-01T09:00:00Z")

    launched = command(shop, created["id"], "launch")

    assert launched.json()["status"] == "scheduled"
    assert launched.json()["is_active"] is False


def test_every_change_is_audited_with_who_and_before_after(shop):
    created = create(shop)
    shop.client.patch(f"/api/v1/campaigns/{created['id']}", {"priority": 5}, format="json")
    command(shop, created["id"], "launch")

    changes = list(CampaignChange.objects.filter(campaign_id=created["id"]))

    assert [c.action for c in changes] == ["created", "updated", "launch"]
    assert all(c.actor.startswith("api key: ") for c in changes)
    assert changes[1].changes == {"priority": [0, 5]}
    assert changes[2].changes["status"] == ["draft", "running"]


def test_running_campaign_with_exposures_refuses_a_new_split_but_takes_a_new_name(shop):
    created = create(shop, variants=SPLIT)
    command(shop, created["id"], "launch")
    campaign = Campaign.objects.get(pk=created["id"])
    Exposure.objects.create(
        campaign=campaign, shopper=do_upsert_shopper(shop.store, "sam"), arm="control"
    )
    url = f"/api/v1/campaigns/{created['id']}"

    resplit = shop.client.patch(
        url,
        {"variants": [{"key": "control", "weight": 20}, {"key": "ten_off", "weight": 80}]},
        format="json",
    )
    renamed = shop.client.patch(url, {"name": "Comeback (spring)"}, format="json")

    assert resplit.status_code == 409
    assert "bias" in resplit.json()["error"]["message"]
    assert renamed.status_code == 200
    campaign.refresh_from_db()
    assert [v["weight"] for v in campaign.variants] == [50.0, 50.0]
    assert campaign.name == "Comeback (spring)"


def test_paused_campaign_can_be_resplit(shop):
    created = create(shop, variants=SPLIT)
    command(shop, created["id"], "launch")
    Exposure.objects.create(
        campaign_id=created["id"], shopper=do_upsert_shopper(shop.store, "sam"), arm="control"
    )
    command(shop, created["id"], "pause")

    resplit = shop.client.patch(
        f"/api/v1/campaigns/{created['id']}",
        {"variants": [{"key": "control", "weight": 20}, {"key": "ten_off", "weight": 80}]},
        format="json",
    )

    assert resplit.status_code == 200, resplit.content
    assert [v["weight"] for v in resplit.json()["variants"]] == [20.0, 80.0]


def test_put_replaces_the_campaign(shop):
    created = create(shop, priority=3)

    replaced = shop.client.put(
        f"/api/v1/campaigns/{created['id']}",
        {"name": "Renamed", "trigger": "prediction_high", "channel": "email"},
        format="json",
    )

    assert replaced.status_code == 200, replaced.content
    assert (replaced.json()["name"], replaced.json()["trigger"]) == ("Renamed", "prediction_high")


def test_only_a_draft_can_be_deleted(shop):
    draft = create(shop)
    running = create(shop, name="Live")
    command(shop, running["id"], "launch")

    deleted = shop.client.delete(f"/api/v1/campaigns/{draft['id']}")
    refused = shop.client.delete(f"/api/v1/campaigns/{running['id']}")

    assert deleted.status_code == 204
    assert refused.status_code == 409
    assert "running" in refused.json()["error"]["message"]
    assert list(Campaign.objects.values_list("name", flat=True)) == ["Live"]


def test_completing_freezes_the_results(shop):
    created = create(shop, variants=SPLIT)
    command(shop, created["id"], "launch")
    campaign = Campaign.objects.get(pk=created["id"])
    Exposure.objects.create(
        campaign=campaign, shopper=do_upsert_shopper(shop.store, "sam"), arm="control"
    )

    completed = command(shop, created["id"], "complete")
    Exposure.objects.create(
        campaign=campaign, shopper=do_upsert_shopper(shop.store, "alex"), arm="ten_off"
    )
    results = shop.client.get(f"/api/v1/campaigns/{created['id']}/results").json()

    assert completed.json()["status"] == "completed"
    campaign.refresh_from_db()
    assert campaign.results is not None
    assert [(v["key"], v["exposures"]) for v in results["variants"]] == [
        ("control", 1),
        ("ten_off", 0),
    ]
    assert command(shop, created["id"], "resume").status_code == 409


def test_is_active_still_launches_and_pauses(shop):
    created = create(shop, is_active=True)

    paused = shop.client.patch(
        f"/api/v1/campaigns/{created['id']}", {"is_active": False}, format="json"
    )

    assert created["status"] == "running"
    assert (paused.json()["status"], paused.json()["is_active"]) == ("paused", False)


def test_another_stores_campaign_is_not_found(shop, other_shop):
    created = create(shop)

    assert command(other_shop, created["id"], "launch").status_code == 404
    assert other_shop.client.get(f"/api/v1/campaigns/{created['id']}/results").status_code == 404
    assert other_shop.client.delete(f"/api/v1/campaigns/{created['id']}").status_code == 404


def test_beat_starts_a_scheduled_campaign_at_its_start_and_completes_it_at_its_end(shop):
    # Given a campaign launched ahead of its start, with an end a week later
    created = create(shop, starts_at="2030-03-01T09:00:00Z", ends_at="2030-03-08T09:00:00Z")
    command(shop, created["id"], "launch")

    # When beat's calendar runs before the start, at the start, and after the end
    with time_machine.travel("2030-03-01T08:59:00Z", tick=False):
        early = follow_campaign_calendar.apply().get()
        status_before_start = Campaign.objects.get(pk=created["id"]).status
    with time_machine.travel("2030-03-01T09:00:30Z", tick=False):
        started = follow_campaign_calendar.apply().get()
        status_after_start = Campaign.objects.get(pk=created["id"]).status
    with time_machine.travel("2030-03-08T09:01:00Z", tick=False):
        ended = follow_campaign_calendar.apply().get()

    # Then it runs only from its start, completes after its end, and says who moved it
    campaign = Campaign.objects.get(pk=created["id"])
    assert (early, started, ended) == (
        {"launch": 0, "complete": 0},
        {"launch": 1, "complete": 0},
        {"launch": 0, "complete": 1},
    )
    assert (status_before_start, status_after_start) == ("scheduled", "running")
    assert campaign.status == CampaignStatus.COMPLETED
    assert campaign.launched_at.isoformat() == "2030-03-01T09:00:30+00:00"
    actors = list(
        CampaignChange.objects.filter(campaign=campaign, action__in=["launch", "complete"])
        .order_by("at")
        .values_list("action", "actor")
    )
    assert actors[1:] == [("launch", CALENDAR_ACTOR), ("complete", CALENDAR_ACTOR)]


def test_the_calendar_starts_only_campaigns_still_scheduled(shop):
    # A campaign moved by hand between the launch and its start stays as it was put.
    created = create(shop, starts_at="2030-03-01T09:00:00Z")
    command(shop, created["id"], "launch")
    Campaign.objects.filter(pk=created["id"]).update(status=CampaignStatus.DRAFT)

    with time_machine.travel("2030-03-02T00:00:00Z", tick=False):
        moved = follow_campaign_calendar.apply().get()

    assert moved == {"launch": 0, "complete": 0}
    assert Campaign.objects.get(pk=created["id"]).status == CampaignStatus.DRAFT
