"""A saturated web process answers 503 with Retry-After at once instead of queueing."""

import pytest
from channels.testing import HttpCommunicator

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def get(path: str, api_key: str = "") -> tuple[int, dict[bytes, bytes]]:
    headers = [(b"host", b"localhost")]
    if api_key:
        headers.append((b"authorization", f"Api-Key {api_key}".encode()))
    response = await HttpCommunicator(application, "GET", path, headers=headers).get_response(
        timeout=10
    )
    return response["status"], dict(response["headers"])


async def test_requests_past_the_in_flight_limit_are_shed_with_retry_after(shop, settings):
    settings.MAX_IN_FLIGHT_REQUESTS = 0  # every request finds the process full

    status, headers = await get("/api/v1/stores", shop.api_key)

    assert status == 503
    assert headers[b"Retry-After"] == b"1"


async def test_health_probes_are_never_shed(settings):
    settings.MAX_IN_FLIGHT_REQUESTS = 0

    status, _ = await get("/health")

    assert status == 200


async def test_metrics_scrapes_are_never_shed(settings):
    settings.MAX_IN_FLIGHT_REQUESTS = 0

    status, _ = await get("/metrics")

    assert status == 200


async def test_finished_requests_free_their_place(shop, settings):
    settings.MAX_IN_FLIGHT_REQUESTS = 1

    statuses = [(await get("/api/v1/stores", shop.api_key))[0] for _ in range(3)]

    assert statuses == [200, 200, 200]
