from contextlib import nullcontext
from datetime import datetime

import pytest
import time_machine
from django.conf import settings

from tracking.tasks import refresh_recent_rollups

SAM = {"email": "sam@example.test", "timezone": "UTC"}


@pytest.fixture(autouse=True)
def daytime_store(db, shop):
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.timezone = "UTC"
    shop.store.save()


def send(session, user_id="sam", cart_id="c-1", channel="email", **extra):
    """An intervention sent now through the real intake (tasks run in-process)."""
    body = {"user_id": user_id, "cart_id": cart_id, "channel": channel, "user": SAM, **extra}
    response = session.client.post("/api/v1/interventions", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def reported(session, path, body):
    """POST a report; one with an ``occurred_at`` arrives at that moment, as a real
    client's does (the server refuses a time the report cannot have happened at)."""
    at = body.get("occurred_at")
    with time_machine.travel(datetime.fromisoformat(at), tick=False) if at else nullcontext():
        return session.client.post(path, body, format="json")


def track(session, intervention_id, event, **body):
    return reported(session, f"/api/v1/track/{intervention_id}", {"event": event, **body})


def rollups_refreshed(at):
    """Beat's rollup recounts (the recent days and the attribution window), run at ``at``:
    the analytics endpoints read the rollups, which see what the raw rows held then."""
    with time_machine.travel(at, tick=False):
        refresh_recent_rollups.apply()
        refresh_recent_rollups.apply(kwargs={"days": settings.ROLLUP_WINDOW_DAYS})
