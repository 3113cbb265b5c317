"""The production layout as real processes: the HTTP API on gunicorn's workers, WebSocket
on daphne, sharing PostgreSQL and Redis (docs/operations.md#process-layout)."""

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest
import requests
import websockets

from interventions.models import Intervention
from realtime.tokens import issue_token
from tests.support.processes import Daphne, HttpServer, test_database_url, wait_for

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


def test_a_saturated_worker_refuses_at_the_door_without_waiting_for_the_body(shop):
    # Given one worker admitting two requests at a time, both stuck: PostgreSQL holds the
    # interventions table locked, so their INSERTs wait (saturation without a stopwatch)
    http = HttpServer(workers=1, MAX_IN_FLIGHT_REQUESTS="2", ASGI_THREADS="4")
    trigger = {"user_id": "door-1", "channel": "websocket", "personalization": {"title": "T"}}
    auth = {"Authorization": f"Api-Key {shop.api_key}"}
    lock = psycopg.connect(test_database_url())
    observer = psycopg.connect(test_database_url(), autocommit=True)
    try:
        http.start()
        lock.execute("LOCK TABLE interventions_intervention IN ACCESS EXCLUSIVE MODE")
        posts = ThreadPoolExecutor(max_workers=2)
        url = f"{http.url}/api/v1/interventions"
        stuck = [
            posts.submit(requests.post, url, json=trigger, headers=auth, timeout=30)
            for _ in range(2)
        ]
        wait_for(lambda: waiting_on_locks(observer) == 2)

        # When more triggers arrive, one of them only its headers so far, and a probe
        shed = [requests.post(url, json=trigger, headers=auth, timeout=10) for _ in range(10)]
        headers_only = answer_to_headers_without_body(http.port, shop.api_key)
        ready = requests.get(f"{http.url}/health/ready", timeout=10)
        lock.rollback()
        admitted = [future.result() for future in stuck]
    finally:
        lock.close()
        observer.close()
        http.stop()

    # Then each is refused at once with the JSON error and a delay, without the worker
    # waiting for a body it will not use; the probe answers; only admitted ones create
    assert [response.status_code for response in shed] == [503] * 10
    assert all(response.headers["Retry-After"] == "1" for response in shed)
    assert all(response.json()["error"]["code"] == "overloaded" for response in shed)
    assert headers_only.startswith(b"HTTP/1.1 503"), headers_only
    assert ready.status_code == 200
    assert [response.status_code for response in admitted] == [201, 201]
    assert Intervention.objects.count() == 2


def waiting_on_locks(connection: psycopg.Connection) -> int:
    row = connection.execute(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    ).fetchone()
    return int(row[0]) if row else 0


def answer_to_headers_without_body(port: int, api_key: str) -> bytes:
    """The first line of the answer to a POST whose body never comes (a slow upload)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(
            b"POST /api/v1/interventions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 200\r\n"
            + f"Authorization: Api-Key {api_key}\r\n\r\n".encode()
        )
        try:
            return client.recv(64)
        except TimeoutError:
            return b"(no answer in 10 s)"


def test_one_scrape_counts_the_requests_of_every_http_worker(shop):
    # Given two workers that each served a trigger: with one admitted request per worker
    # and the interventions table locked, a trigger either sticks in a free worker or is
    # shed by a full one, until both hold one
    http = HttpServer(workers=2, MAX_IN_FLIGHT_REQUESTS="1")
    trigger = {"user_id": "scrape-1", "channel": "websocket", "personalization": {"title": "T"}}
    auth = {"Authorization": f"Api-Key {shop.api_key}"}
    lock = psycopg.connect(test_database_url())
    observer = psycopg.connect(test_database_url(), autocommit=True)
    try:
        http.start()
        url = f"{http.url}/api/v1/interventions"
        lock.execute("LOCK TABLE interventions_intervention IN ACCESS EXCLUSIVE MODE")
        posts = ThreadPoolExecutor(max_workers=20)
        answers = []

        def both_workers_hold_one() -> bool:
            answers.append(posts.submit(requests.post, url, json=trigger, headers=auth, timeout=30))
            return waiting_on_locks(observer) == 2

        wait_for(both_workers_hold_one, timeout=20, interval=0.3)
        lock.rollback()
        statuses = [future.result().status_code for future in answers]

        # When Prometheus scrapes once
        scrape = requests.get(f"{http.url}/metrics", timeout=10).text
    finally:
        lock.close()
        observer.close()
        http.stop()

    # Then it counts both workers' triggers, and every shed one; the pipeline's gauges,
    # read from PostgreSQL, appear once
    assert statuses.count(201) == 2
    assert sample(scrape, "engine_interventions_decided_total") == 2
    assert sample(scrape, "engine_interventions") == 2
    assert sample(scrape, "engine_requests_shed_total") == statuses.count(503)


def sample(exposition: str, name: str) -> float:
    """The sum of a metric's samples in a Prometheus text exposition."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in exposition.splitlines()
        if line.startswith((f"{name}{{", f"{name} "))
    )
