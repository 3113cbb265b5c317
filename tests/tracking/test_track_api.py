"""POST/GET /api/v1/track/{id}: what clients report about an intervention, and its story."""

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from interventions.models import Intervention, Status
from tests.tracking.conftest import send, track
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)


SENT = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def test_reported_click_is_recorded_with_its_metadata_and_time(shop):
    at = SENT + timedelta(minutes=30)
    with time_machine.travel(SENT, tick=False):
        intervention_id = send(shop)

    with time_machine.travel(at + timedelta(minutes=5), tick=False):
        response = track(
            shop, intervention_id, "clicked", metadata={"button": "cta"}, occurred_at=at.isoformat()
        )

    assert response.status_code == 201
    assert response.json() == {
        "event": "clicked",
        "recorded": True,
        "duplicate": False,
        "status": "sent",
    }
    click = TrackingEvent.objects.get(intervention_id=intervention_id, kind="clicked")
    assert (click.source, click.metadata, click.occurred_at) == ("api", {"button": "cta"}, at)


def test_delivered_moves_the_intervention_through_the_engine_once(shop):
    intervention_id = send(shop)

    first = track(shop, intervention_id, "delivered")
    again = track(shop, intervention_id, "delivered")

    assert (first.status_code, first.json()["status"]) == (201, "delivered")
    assert (again.status_code, again.json()["recorded"]) == (200, False)
    intervention = Intervention.objects.get(pk=intervention_id)
    assert intervention.status == Status.DELIVERED
    assert intervention.events.filter(to_status="delivered").count() == 1
    assert TrackingEvent.objects.filter(intervention=intervention, kind="delivered").count() == 1


def test_repeated_open_within_the_window_is_kept_but_flagged(shop, settings):
    settings.TRACKING_DEDUPE_SECONDS = 60
    at = SENT
    with time_machine.travel(SENT, tick=False):
        intervention_id = send(shop)

    with time_machine.travel(at + timedelta(minutes=10), tick=False):
        first = track(shop, intervention_id, "opened", occurred_at=at.isoformat())
        repeat = track(
            shop, intervention_id, "opened", occurred_at=(at + timedelta(seconds=30)).isoformat()
        )
        later = track(
            shop, intervention_id, "opened", occurred_at=(at + timedelta(minutes=5)).isoformat()
        )

    assert [r.json()["duplicate"] for r in (first, repeat, later)] == [False, True, False]
    assert TrackingEvent.objects.filter(intervention_id=intervention_id, kind="opened").count() == 3


def test_unknown_event_is_a_400_naming_the_field(shop):
    intervention_id = send(shop)

    response = track(shop, intervention_id, "exploded")

    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["event"]
    assert not TrackingEvent.objects.filter(intervention_id=intervention_id).exists()


def test_a_time_the_report_cannot_have_happened_is_a_400_naming_occurred_at(shop, settings):
    settings.TRACKING_CLOCK_SKEW_SECONDS = 300
    with time_machine.travel(SENT, tick=False):
        intervention_id = send(shop)

        def report(at):
            # Posted now, whatever time it names (track() would arrive at that time).
            body = {"event": "clicked", "occurred_at": at.isoformat()}
            return shop.client.post(f"/api/v1/track/{intervention_id}", body, format="json")

        # Given clocks that drift by minutes, when they report within the slack, it counts.
        drifted = [report(SENT + timedelta(minutes=4)), report(SENT - timedelta(minutes=4))]
        # When a report is hours off, it is refused with the reason.
        future = report(SENT + timedelta(hours=2))
        before = report(SENT - timedelta(hours=2))

    assert [r.status_code for r in drifted] == [201, 201]
    assert (future.status_code, before.status_code) == (400, 400)
    [why_future] = future.json()["error"]["fields"]["occurred_at"]
    [why_before] = before.json()["error"]["fields"]["occurred_at"]
    assert "in the future" in why_future
    assert "before the intervention was created" in why_before
    assert TrackingEvent.objects.filter(intervention_id=intervention_id).count() == 2


def test_a_report_time_past_tracking_retention_is_a_400(shop, settings):
    settings.RETENTION_DAYS = {**settings.RETENTION_DAYS, "tracking_events": 30}
    with time_machine.travel(SENT, tick=False):
        intervention_id = send(shop)

    # A late batch from an app offline for weeks: the row would be pruned at once.
    with time_machine.travel(SENT + timedelta(days=31), tick=False):
        body = {"event": "opened", "occurred_at": SENT.isoformat()}
        stale = shop.client.post(f"/api/v1/track/{intervention_id}", body, format="json")
        fresh = track(shop, intervention_id, "opened")

    assert (stale.status_code, fresh.status_code) == (400, 201)
    [why] = stale.json()["error"]["fields"]["occurred_at"]
    assert "30 days" in why


def test_another_stores_intervention_is_a_404_both_ways(shop, other_shop):
    intervention_id = send(shop)

    posted = track(other_shop, intervention_id, "clicked")
    read = other_shop.client.get(f"/api/v1/track/{intervention_id}")

    assert (posted.status_code, read.status_code) == (404, 404)
    assert not TrackingEvent.objects.filter(kind="clicked").exists()


def test_timeline_merges_status_changes_and_tracking_in_order(shop):
    intervention_id = send(shop)
    track(shop, intervention_id, "delivered")
    track(shop, intervention_id, "clicked")

    response = shop.client.get(f"/api/v1/track/{intervention_id}")

    assert response.status_code == 200
    timeline = response.json()["timeline"]
    entries = [(e["type"], e["event"]) for e in timeline]
    assert entries[:2] == [("status", "queued"), ("status", "sending")]
    assert set(entries[2:]) == {
        ("status", "sent"),
        ("status", "delivered"),
        ("tracking", "delivered"),
        ("tracking", "clicked"),
    }
    assert entries.index(("status", "sent")) < entries.index(("status", "delivered"))
    assert entries[-1] == ("tracking", "clicked")
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)


def test_intervention_detail_lists_its_tracking(shop):
    intervention_id = send(shop)
    track(shop, intervention_id, "displayed", metadata={"page": "/cart"})

    detail = shop.client.get(f"/api/v1/interventions/{intervention_id}").json()

    assert [(t["event"], t["source"], t["metadata"]) for t in detail["tracking"]] == [
        ("displayed", "api", {"page": "/cart"})
    ]
