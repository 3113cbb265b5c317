"""Callers past their rate get a 429 with Retry-After, in the API's error shape."""

import socket
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from rest_framework.test import APIClient

from realtime.redis_clients import sync_redis
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db

# Thirty seconds into a minute: a per-minute window has 30 s left, whatever the real clock.
HALF_PAST = datetime(2030, 1, 1, 12, 0, 30, tzinfo=UTC)


@pytest.fixture
def frozen_clock():
    with time_machine.travel(HALF_PAST, tick=False):
        yield


@pytest.fixture
def stranger() -> APIClient:
    # Counters outlive a test in Redis: a client address no other test or run has used.
    address = f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"
    return APIClient(REMOTE_ADDR=address)


def test_a_key_past_its_rate_gets_429_with_retry_after(shop, other_shop, settings, frozen_clock):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "api_key": "3/min"}

    answered = [shop.client.get("/api/v1/shoppers").status_code for _ in range(3)]
    refused = shop.client.get("/api/v1/shoppers")
    other_store = other_shop.client.get("/api/v1/shoppers")

    assert answered == [200, 200, 200]
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "throttled"
    assert other_store.status_code == 200  # the limit is per key


def test_the_rate_window_reopens_after_retry_after(shop, settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "api_key": "1/min"}

    with time_machine.travel(HALF_PAST, tick=False) as clock:
        shop.client.get("/api/v1/shoppers")
        refused = shop.client.get("/api/v1/shoppers")
        clock.shift(int(refused["Retry-After"]))
        again = shop.client.get("/api/v1/shoppers")

    assert refused.status_code == 429
    assert again.status_code == 200


def test_guessing_keys_from_one_address_gets_429(stranger, settings, frozen_clock):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "unauthenticated": "5/min"}
    stranger.credentials(HTTP_AUTHORIZATION="Api-Key Abcd1234.not-a-real-key")

    answered = [stranger.get("/api/v1/shoppers").status_code for _ in range(5)]
    refused = stranger.get("/api/v1/shoppers")

    assert answered == [401] * 5
    assert refused.status_code == 429
    assert refused["Retry-After"] == "30"
    assert refused.json()["error"]["code"] == "throttled"


def test_requests_without_a_key_count_per_address(stranger, shop, settings, frozen_clock):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "unauthenticated": "2/min"}

    statuses = [stranger.get("/api/v1/interventions").status_code for _ in range(3)]
    with_a_key = shop.client.get("/api/v1/interventions")

    assert statuses == [401, 401, 429]
    assert with_a_key.status_code == 200


def test_a_forged_forwarded_for_does_not_dodge_the_limit(stranger, settings, frozen_clock):
    # No proxy in front (NUM_PROXIES 0, the default): the peer's address is the caller.
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "unauthenticated": "2/min"}

    statuses = [
        stranger.get("/api/v1/interventions", HTTP_X_FORWARDED_FOR=f"203.0.113.{n}").status_code
        for n in range(3)
    ]

    assert statuses == [401, 401, 429]


@pytest.fixture
def redis_down(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    sync_redis.cache_clear()
    yield
    sync_redis.cache_clear()


def test_the_api_keeps_answering_when_redis_is_down(shop, stranger, redis_down):
    with_a_key = shop.client.get("/api/v1/shoppers")
    without = stranger.get("/api/v1/shoppers")

    assert with_a_key.status_code == 200
    assert without.status_code == 401


def test_requests_from_other_processes_count_against_the_limit(shop, settings, frozen_clock):
    """Given another web process already counted 2 of a key's 3 requests this minute,
    when this process serves its first request, the shared count lets it through, and the
    next one is refused: the in-memory counts do not hide the other processes' traffic."""
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "api_key": "3/min"}
    prefix = shop.api_key.partition(".")[0]
    window = int(HALF_PAST.timestamp() // 60)
    sync_redis().set(f"ie:throttle:api_key:{prefix}:{window}", 2, ex=90)

    first = shop.client.get("/api/v1/shoppers")
    second = shop.client.get("/api/v1/shoppers")

    assert first.status_code == 200
    assert second.status_code == 429


def test_a_redis_that_stops_answering_delays_a_request_by_the_timeout_only(
    shop, settings, hung_redis
):
    # Given the cache as configured, pointing at a Redis that accepts and never answers
    settings.CACHES = {"default": {**settings.CACHES["default"], "LOCATION": hung_redis}}
    settings.REDIS_SOCKET_TIMEOUT_SECONDS = 2.0

    started = time.monotonic()
    response = shop.client.get("/api/v1/shoppers")
    took = time.monotonic() - started

    assert response.status_code == 200
    assert took < 3 * settings.REDIS_SOCKET_TIMEOUT_SECONDS


@pytest.fixture
def hung_redis():
    """A TCP listener that accepts connections and never replies."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    accepted = []
    stop = threading.Event()

    def accept_forever():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept_forever, daemon=True)
    thread.start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    listener.close()


def test_a_malformed_rate_fails_manage_py_check(settings):
    settings.API_THROTTLE_RATES = {**settings.API_THROTTLE_RATES, "api_key": "lots/minute"}

    with pytest.raises(SystemCheckError, match=r"config\.E003.*api_key"):
        call_command("check")


# --- Admin login ---------------------------------------------------------------


@pytest.fixture
def admin_user() -> User:
    return User.objects.create_superuser("admin", "admin@example.test", "right-password")


def log_in(client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "admin", "password": password})


def test_admin_login_locks_out_after_the_failure_limit(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 3

    failures = [log_in(client, "guess").status_code for _ in range(2)]
    third = log_in(client, "guess")
    even_the_right_password = log_in(client, "right-password")

    assert failures == [200, 200]  # the form again, with its error
    assert third.status_code == 429
    assert even_the_right_password.status_code == 429
    assert even_the_right_password["Retry-After"] == str(15 * 60)
    assert even_the_right_password.json()["error"]["code"] == "locked_out"


def test_admin_login_below_the_limit_still_works(client, admin_user, settings):
    settings.AXES_FAILURE_LIMIT = 3

    log_in(client, "guess")
    response = log_in(client, "right-password")

    assert response.status_code == 302
    assert response["Location"] == "/admin/"
