"""The production layout as real processes: the HTTP API on gunicorn's workers, WebSocket
on daphne, sharing PostgreSQL and Redis (docs/operations.md#process-layout)."""

import asyncio
import json

import pytest
import requests
import websockets

from interventions.models import Intervention
from realtime.tokens import issue_token
from tests.support.processes import Daphne, HttpServer

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def split_layout(transactional_db):
    websocket, http = Daphne(), HttpServer(workers=2)
    try:
        websocket.start()
        http.start()
        yield websocket, http
    finally:
        http.stop()
        websocket.stop()


async def first_intervention(socket) -> dict:
    while True:
        frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
        if frame["type"] == "intervention":
            return frame


def test_a_trigger_posted_to_the_http_server_reaches_a_shopper_on_daphne(shop, split_layout):
    websocket, http = split_layout
    token, _ = issue_token(str(shop.store.pk), "user", "split-1")

    async def scenario() -> dict:
        # Given a shopper connected to daphne
        url = f"{websocket.ws_url}/ws/user/split-1/?token={token}"
        async with websockets.connect(url, open_timeout=5) as socket:
            assert json.loads(await asyncio.wait_for(socket.recv(), 5))["type"] == "config"
            # When the store's backend triggers an intervention on the HTTP server
            response = await asyncio.to_thread(
                requests.post,
                f"{http.url}/api/v1/interventions",
                json={
                    "user_id": "split-1",
                    "channel": "websocket",
                    "personalization": {"title": "Split layout", "body": "Hello"},
                },
                headers={"Authorization": f"Api-Key {shop.api_key}"},
                timeout=10,
            )
            assert response.status_code == 201, response.text
            return await first_intervention(socket)

    frame = asyncio.run(scenario())

    # Then the frame arrives over daphne, for the intervention the HTTP server created
    assert frame["payload"]["content"]["title"] == "Split layout"
    assert Intervention.objects.filter(pk=frame["payload"]["id"]).exists()


def test_the_http_server_sheds_load_and_still_answers_health_probes(shop):
    # Given HTTP workers that find themselves full at every request
    http = HttpServer(workers=1, MAX_IN_FLIGHT_REQUESTS="0")
    try:
        http.start()
        auth = {"Authorization": f"Api-Key {shop.api_key}"}

        # When a client calls the API, and a probe asks for health
        shed = requests.get(f"{http.url}/api/v1/stores", headers=auth, timeout=10)
        ready = requests.get(f"{http.url}/health/ready", timeout=10)
    finally:
        http.stop()

    # Then the call is refused at once with a delay to retry after, and the probe answers
    assert shed.status_code == 503
    assert shed.headers["Retry-After"] == "1"
    assert shed.json()["error"]["code"] == "overloaded"
    assert ready.status_code == 200
