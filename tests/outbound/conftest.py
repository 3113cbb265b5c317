import pytest

from outbound import actions
from outbound.models import OutboxEvent
from tests.support.webhook_receiver import Receiver

SAM = {"email": "sam@example.test", "timezone": "UTC"}


@pytest.fixture(autouse=True)
def daytime_store(db, shop):
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.timezone = "UTC"
    shop.store.frequency_cap_per_hour = 100
    shop.store.channel_caps_per_day = {}
    shop.store.save()


@pytest.fixture
def receiver():
    subscriber = Receiver().start()
    yield subscriber
    subscriber.stop()


@pytest.fixture
def endpoint(shop, receiver):
    return actions.do_create_endpoint(shop.store, receiver.url)


def send(session, user_id="sam", cart_id="c-1", channel="email"):
    """An intervention sent now through the real intake (tasks run in-process)."""
    body = {"user_id": user_id, "cart_id": cart_id, "channel": channel, "user": SAM}
    response = session.client.post("/api/v1/interventions", body, format="json")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def track(session, intervention_id, event):
    response = session.client.post(
        f"/api/v1/track/{intervention_id}", {"event": event}, format="json"
    )
    assert response.status_code in (200, 201), response.json()


def outbox(**filters):
    return list(OutboxEvent.objects.filter(**filters).order_by("id"))
