"""Two real ASGI server processes sharing Redis: a trigger through one reaches a shopper
connected to the other (docs/websocket-protocol.md#scaling-out)."""

import asyncio
import json
import time

import pytest
import requests
import websockets

from interventions.models import Intervention, Status
from realtime.tokens import issue_token
from tests.support.processes import Daphne

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def two_servers(transactional_db):
    servers = [Daphne(), Daphne()]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


async def receive_intervention(url: str, triggered: asyncio.Event) -> dict:
    async with websockets.connect(url, open_timeout=5) as socket:
        config = json.loads(await asyncio.wait_for(socket.recv(), 5))
        assert config["type"] == "config"
        triggered.set()
        while True:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
            if frame["type"] == "intervention":
                await socket.send(
                    json.dumps({"type": "ack", "payload": {"messageId": frame["messageId"]}})
                )
                await asyncio.sleep(0.5)
                return frame


def test_trigger_on_one_server_reaches_a_shopper_on_the_other(shop, two_servers):
    listening_on, triggering_on = two_servers
    token, _ = issue_token(str(shop.store.pk), "user", "cross-1")

    async def scenario() -> dict:
        connected = asyncio.Event()
        receiving = asyncio.create_task(
            receive_intervention(f"{listening_on.ws_url}/ws/user/cross-1/?token={token}", connected)
        )
        await asyncio.wait(
            [receiving, asyncio.create_task(connected.wait())],
            timeout=10,
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert connected.is_set(), listening_on.output()
        response = await asyncio.to_thread(
            requests.post,
            f"{triggering_on.url}/api/v1/interventions",
            json={
                "user_id": "cross-1",
                "channel": "websocket",
                "personalization": {"title": "Across processes", "body": "Hello"},
            },
            headers={"Authorization": f"Api-Key {shop.api_key}"},
            timeout=10,
        )
        assert response.status_code in (200, 201, 202), response.text
        return await receiving

    frame = asyncio.run(scenario())

    intervention = Intervention.objects.get(pk=frame["payload"]["id"])
    assert frame["payload"]["content"]["title"] == "Across processes"
    deadline = time.monotonic() + 5
    while intervention.status != Status.DELIVERED and time.monotonic() < deadline:
        time.sleep(0.1)
        intervention.refresh_from_db()
    assert intervention.status == Status.DELIVERED
    assert intervention.provider_message_id == frame["messageId"]
