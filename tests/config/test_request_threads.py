"""An HTTP request costs one hand-off to a pool thread, not a thread of its own."""

import threading

import pytest
from channels.testing import HttpCommunicator

from config.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)


async def get_stores(api_key: str) -> int:
    communicator = HttpCommunicator(
        application,
        "GET",
        "/api/v1/stores",
        headers=[(b"host", b"localhost"), (b"authorization", f"Api-Key {api_key}".encode())],
    )
    return (await communicator.get_response(timeout=10))["status"]


async def test_serving_requests_starts_no_thread_per_request(shop, monkeypatch):
    """Django's handler started (and joined) a thread per request for its signal
    receivers: ~0.5 ms of CPU per trigger (issue 12)."""
    for _ in range(3):  # the pool's threads, started once
        assert await get_stores(shop.api_key) == 200
    started: list[str] = []
    start = threading.Thread.start

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", counting_start)

    statuses = [await get_stores(shop.api_key) for _ in range(10)]

    assert statuses == [200] * 10
    # The event loop's pool ("asyncio_N") may still grow to its size in a burst.
    assert [name for name in started if not name.startswith("asyncio_")] == []
