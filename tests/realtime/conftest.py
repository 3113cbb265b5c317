import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import pytest
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import connections
from django.utils import timezone

from config.routing import websocket_urlpatterns
from interventions.models import Intervention, Status
from notifications.transports.base import OutboundMessage, get_transport
from realtime.consumers import StoreRules
from realtime.redis_clients import sync_redis
from realtime.tokens import issue_token
from stores.actions import do_upsert_shopper
from stores.models import Store

ORIGIN = "https://shop.acme.example"


@pytest.fixture(autouse=True)
def realtime_state(settings):
    """Each test starts with no rooms, registry or cached store rules (our Redis db only)."""
    settings.NOTIFICATION_TRANSPORTS = {
        **settings.NOTIFICATION_TRANSPORTS,
        "websocket": "realtime.transport.WebSocketTransport",
    }
    get_transport.cache_clear()
    sync_redis.cache_clear()
    client = sync_redis()
    for key in client.scan_iter("ie:ws:*", count=1000):
        client.delete(key)
    StoreRules.forget()
    yield
    get_transport.cache_clear()
    sync_redis.cache_clear()
    StoreRules.forget()


@pytest.fixture(autouse=True)
def reset_the_pool_after_async_tests(request):
    """Each async test runs on an event loop of its own, and its executor threads end with
    it; a pool connection one of them still holds then never goes back to the psycopg pool
    (about one slot per test, until the 20th test waits 10 s and fails). Reset the pool
    after each transactional test; the suite itself then never runs out."""
    yield
    marker = request.node.get_closest_marker("django_db")
    if marker is None or not marker.kwargs.get("transaction"):
        return
    for each in connections.all():
        each.close()
        close_pool = getattr(each, "close_pool", None)
        if close_pool is not None:
            close_pool()


@pytest.fixture
async def channel_layer():
    layer = get_channel_layer()
    yield layer
    await layer.flush()


@pytest.fixture
def storefront(shop):
    Store.objects.filter(pk=shop.store.pk).update(allowed_origins=[ORIGIN])
    shop.store.refresh_from_db()
    return shop


def room_url(store_id: Any, scope: str = "store", user_id: str = "", **query: str) -> str:
    token = query.pop("token", None)
    if token is None:
        token, _ = issue_token(str(store_id), scope, user_id)
    params = "&".join(f"{k}={quote(v, safe='')}" for k, v in {"token": token, **query}.items())
    room = f"/ws/store/{store_id}/" if scope == "store" else f"/ws/user/{quote(user_id)}/"
    return f"{room}?{params}"


def communicator(url: str, origin: str | None = ORIGIN) -> WebsocketCommunicator:
    headers = [(b"origin", origin.encode())] if origin else []
    return WebsocketCommunicator(URLRouter(websocket_urlpatterns), url, headers=headers)


async def open_room(url: str, origin: str | None = ORIGIN) -> tuple[WebsocketCommunicator, dict]:
    """A connected client, and the config frame it was greeted with."""
    client = communicator(url, origin)
    connected, _ = await client.connect()
    assert connected
    config = await client.receive_json_from(timeout=2)
    assert config["type"] == "config"
    return client, config


async def refusal_code(url: str, origin: str | None = ORIGIN) -> int:
    client = communicator(url, origin)
    await client.connect()
    closing = await client.receive_output(timeout=2)
    assert closing["type"] == "websocket.close"
    await client.disconnect()
    return int(closing["code"])


def sent_intervention(store: Store, user_id: str, **fields: Any) -> Intervention:
    """A websocket intervention the pipeline has sent (status sent), as a row."""
    shopper = do_upsert_shopper(store, user_id)
    values: dict[str, Any] = {
        "origin": "trigger",
        "requested_channel": "websocket",
        "channel": "websocket",
        "status": Status.SENT,
        "content": {"title": "Still there?", "body": "Your cart misses you.", "cta": "Back"},
        "sent_at": timezone.now(),
        "expires_at": timezone.now() + timedelta(hours=1),
    }
    values.update(fields)
    return Intervention.objects.create(store=store, shopper=shopper, **values)


def publish(intervention: Intervention) -> str:
    """Send it through the websocket transport the way the pipeline does; record the id."""
    message_id = get_transport("websocket").send(
        OutboundMessage(
            intervention_id=str(intervention.pk),
            store_id=str(intervention.store_id),
            channel="websocket",
            recipient=intervention.shopper.external_id,
            content=intervention.content,
            metadata={"kind": "trigger", "cart": None, "discount": None, "expires_at": None},
        )
    )
    Intervention.objects.filter(pk=intervention.pk).update(provider_message_id=message_id)
    intervention.provider_message_id = message_id
    return message_id


def random_user() -> str:
    return f"shopper-{uuid.uuid4().hex[:8]}"
