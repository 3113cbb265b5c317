"""Faults with real processes (docs/operations.md#measured-faults): Redis restarted under
connected WebSocket shoppers, and PostgreSQL cut off under API load.

Neither touches the machine's shared services: Redis is a private redis-server on a
spare port, and PostgreSQL is reached through a TCP proxy in this test that is cut and
restored (other test runs use the same PostgreSQL). The counts each test measures are
printed (`pytest -s`) and reported in docs/operations.md.
"""

import asyncio
import contextlib
import json
import socket
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
import requests
import websockets
from django.conf import settings as django_settings
from django.contrib.auth.models import User
from django.test import Client

from realtime.tokens import issue_token
from tests.support import processes
from tests.support.processes import Daphne, free_port, wait_for
from tracking.links import open_pixel_url, recovery_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True), pytest.mark.timeout(240)]

SHOPPERS = 8
# Connections catch up on a heartbeat (25 s in production): shorter here, same mechanism.
HEARTBEAT_SECONDS = 5


@pytest.fixture
def daytime_store(shop):
    shop.store.quiet_hours_start = shop.store.quiet_hours_end = None
    shop.store.frequency_cap_per_hour = 100
    shop.store.channel_caps_per_day = {"websocket": 100}
    shop.store.save()
    return shop


# --- Redis restarted while shoppers are connected ----------------------------------------


class Shopper:
    """One connected storefront: records every intervention frame it gets, and acks it."""

    def __init__(self, server: Daphne, store_id: str, user_id: str):
        token, _ = issue_token(store_id, "user", user_id)
        self.url = f"{server.ws_url}/ws/user/{user_id}/?token={token}"
        self.user_id = user_id
        self.frames: list[tuple[str, float]] = []  # (intervention id, monotonic time)
        self.connected = asyncio.Event()
        self.closed_at: float | None = None

    async def listen(self) -> None:
        async with websockets.connect(self.url, open_timeout=10) as socket_:
            self.connected.set()
            try:
                async for raw in socket_:
                    frame = json.loads(raw)
                    if frame["type"] == "intervention":
                        self.frames.append((frame["payload"]["id"], time.monotonic()))
                        ack = {"type": "ack", "payload": {"messageId": frame["messageId"]}}
                        await socket_.send(json.dumps(ack))
            finally:
                self.closed_at = time.monotonic()


def trigger(server: Daphne, api_key: str, user_id: str, title: str) -> requests.Response:
    return requests.post(
        f"{server.url}/api/v1/interventions",
        json={"user_id": user_id, "channel": "websocket",
              "personalization": {"title": title, "body": "Your cart is waiting"}},
        headers={"Authorization": f"Api-Key {api_key}"},
        timeout=20,
    )  # fmt: skip


class PrivateRedis:
    def __init__(self, tmp_path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log = tmp_path / "redis.log"
        self.running: contextlib.ExitStack | None = None

    def start(self) -> None:
        self.running = contextlib.ExitStack()
        self.running.enter_context(
            processes.running(processes.redis_command(self.port), {}, self.log)
        )
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)
        wait_for(lambda: _pings(client), timeout=10)

    def stop(self) -> None:
        if self.running is not None:
            self.running.close()
            self.running = None


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_redis_restart_under_connected_shoppers(daytime_store, tmp_path):
    shop = daytime_store
    private_redis = PrivateRedis(tmp_path)
    private_redis.start()
    sweep = {"SWEEP_WEBSOCKET_QUEUED_AFTER_SECONDS": "3", "SWEEPER_INTERVAL_SECONDS": "1",
             "SCHEDULER_INTERVAL_SECONDS": "1", "WS_IDLE_TIMEOUT_SECONDS": "600",
             "WS_HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS)}  # fmt: skip
    env = processes.engine_env(private_redis.url, **sweep)
    server = Daphne(REDIS_URL=private_redis.url, CELERY_BROKER_URL=private_redis.url, **sweep)
    with contextlib.ExitStack() as stack:
        stack.callback(private_redis.stop)
        stack.enter_context(processes.running(processes.worker_command(), env, tmp_path / "w.log"))
        stack.enter_context(
            processes.running(processes.beat_command(tmp_path / "beat"), env, tmp_path / "b.log")
        )
        server.start()
        stack.callback(server.stop)
        report = asyncio.run(_restart_scenario(server, shop, private_redis))

    print("redis restart:", json.dumps(report))
    # Nothing published while the link was down, or just after, is lost or doubled, and
    # it reaches the shoppers on the connections they had: no reconnect needed.
    assert report["server_errors"] == 0
    assert report["connections_dropped"] == 0
    assert report["lost"] == 0, report
    assert report["doubled"] == 0, report


async def _restart_scenario(server: Daphne, shop, private_redis: PrivateRedis) -> dict:
    store_id = str(shop.store.pk)
    shoppers = [Shopper(server, store_id, f"fault-{n}") for n in range(SHOPPERS)]
    listening = [asyncio.create_task(s.listen()) for s in shoppers]
    await asyncio.wait_for(asyncio.gather(*(s.connected.wait() for s in shoppers)), 20)

    async def trigger_all(title: str) -> list[requests.Response]:
        return list(
            await asyncio.gather(
                *(
                    asyncio.to_thread(trigger, server, shop.api_key, s.user_id, title)
                    for s in shoppers
                )
            )
        )

    # Given every shopper got a frame with Redis up
    before = await trigger_all("before")
    await _until(lambda: all(len(s.frames) >= 1 for s in shoppers), 20)

    # When Redis stops, frames are triggered, Redis comes back empty, more are triggered
    private_redis.stop()
    during = await trigger_all("while Redis is down")
    await asyncio.sleep(HEARTBEAT_SECONDS)
    private_redis.start()
    restarted = time.monotonic()
    after = await trigger_all("just after Redis returned")
    expected = 3
    with contextlib.suppress(TimeoutError):
        await _until(lambda: all(len({i for i, _ in s.frames}) >= expected for s in shoppers), 90)

    dropped = sum(s.closed_at is not None for s in shoppers)
    for task in listening:
        task.cancel()
    await asyncio.gather(*listening, return_exceptions=True)
    responses = before + during + after
    created = {r.json()["id"] for r in responses if r.status_code in (200, 201, 202)}
    received = Counter(i for s in shoppers for i, _ in s.frames)
    late = [t - restarted for s in shoppers for i, t in s.frames if t > restarted]
    return {
        "triggered": len(responses),
        "statuses": dict(Counter(r.status_code for r in responses)),
        "server_errors": sum(r.status_code >= 500 for r in responses),
        "lost": len(created - set(received)),
        "doubled": sum(count - 1 for count in received.values() if count > 1),
        "connections_dropped": dropped,
        "recovery_seconds_max": round(max(late), 1) if late else None,
        "recovery_seconds_median": round(sorted(late)[len(late) // 2], 1) if late else None,
    }


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.1)


# --- PostgreSQL unreachable under load ------------------------------------------------------


class CuttableProxy:
    """A TCP proxy to PostgreSQL: ``cut()`` drops every connection and refuses new ones
    (what a crashed or restarting server looks like to a client), ``restore()`` undoes it."""

    def __init__(self, upstream_port: int):
        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = threading.Event()
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.listener.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            if self.is_cut.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open.update({client, server})
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                target.sendall(chunk)
        for end in (source, target):
            self._close(end)

    def _close(self, end: socket.socket) -> None:
        with self.lock:
            self.open.discard(end)
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        end.close()

    def cut(self) -> None:
        self.is_cut.set()
        with self.lock:
            ends = list(self.open)
        for end in ends:
            self._close(end)

    def restore(self) -> None:
        self.is_cut.clear()

    def stop(self) -> None:
        self.stopping.set()
        self.cut()
        self.listener.close()


def through_proxy(database_url: str, port: int) -> str:
    parts = urlsplit(database_url)
    credentials = parts.netloc.rsplit("@", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}"))


UP_SECONDS, CUT_SECONDS, RESTORED_SECONDS = 4.0, 8.0, 12.0
CLIENTS = 4


def test_postgres_unreachable_under_load_is_503_and_recovers_without_restart(daytime_store):
    shop = daytime_store
    database_url = processes.test_database_url()
    proxy = CuttableProxy(urlsplit(database_url).port or 5432)
    server = Daphne(
        DATABASE_URL=through_proxy(database_url, proxy.port),
        DATABASE_POOL_TIMEOUT="3",
        API_RATE_PER_KEY="0",
    )
    try:
        server.start()
        outcomes = _load_through_outage(server, shop.api_key, proxy)
    finally:
        server.stop()
        proxy.stop()

    report = _summarise(outcomes)
    print("postgres outage:", json.dumps(report))
    assert report["server_errors_other_than_503"] == 0, server.output()
    assert report["during_outage"].get("503", 0) > 0
    assert report["no_answer"] == 0
    assert report["recovery_seconds"] is not None
    assert report["recovery_seconds"] < 10
    assert report["last_5s"] == {"201": report["last_5s"].get("201", 0)}, report


def _load_through_outage(server: Daphne, api_key: str, proxy: CuttableProxy) -> list:
    """(phase, seconds since the restore or None, status or "no answer") per request."""
    started = time.monotonic()
    restored_at: list[float] = []
    stop_at = started + UP_SECONDS + CUT_SECONDS + RESTORED_SECONDS
    outcomes: list = []

    def client(n: int) -> None:
        session = requests.Session()
        sent = 0
        while time.monotonic() < stop_at:
            sent += 1
            phase = ("before" if not proxy.is_cut.is_set() and not restored_at
                     else "outage" if proxy.is_cut.is_set() else "after")  # fmt: skip
            at = time.monotonic()
            try:
                status: int | str = session.post(
                    f"{server.url}/api/v1/interventions",
                    json={"user_id": f"load-{n}-{sent}", "channel": "websocket"},
                    headers={"Authorization": f"Api-Key {api_key}"},
                    timeout=15,
                ).status_code
            except requests.RequestException:
                status = "no answer"
            since = at - restored_at[0] if restored_at else None
            outcomes.append((phase, since, status))
            time.sleep(0.05)

    with ThreadPoolExecutor(CLIENTS) as pool:
        for n in range(CLIENTS):
            pool.submit(client, n)
        time.sleep(UP_SECONDS)
        proxy.cut()
        time.sleep(CUT_SECONDS)
        proxy.restore()
        restored_at.append(time.monotonic())
    return outcomes


def _summarise(outcomes: list) -> dict:
    by_phase: dict[str, Counter] = {"before": Counter(), "outage": Counter(), "after": Counter()}
    for phase, _, status in outcomes:
        by_phase[phase][str(status)] += 1
    successes_after = sorted(s for p, s, st in outcomes if p == "after" and st == 201)
    last = Counter(
        str(st)
        for p, s, st in outcomes
        if p == "after" and s is not None and s > RESTORED_SECONDS - 5
    )
    return {
        "requests": len(outcomes),
        "before": dict(by_phase["before"]),
        "during_outage": dict(by_phase["outage"]),
        "after_restore": dict(by_phase["after"]),
        "server_errors_other_than_503": sum(
            1 for _, _, st in outcomes if isinstance(st, int) and st >= 500 and st != 503
        ),
        "no_answer": sum(1 for _, _, st in outcomes if st == "no answer"),
        "recovery_seconds": round(successes_after[0], 1) if successes_after else None,
        "last_5s": dict(last),
    }


def test_admin_links_and_pixel_answer_a_postgres_outage_without_a_500(daytime_store):
    """Only the API had a 503 for an outage; a marketer in the admin and a shopper
    clicking an email link got a plain 500, and an email's open pixel a broken image."""
    shop = daytime_store
    marketer = User.objects.create_superuser("outage-marketer", "m@example.com", "pw-123456")
    browser = Client()
    browser.force_login(marketer)
    session_cookie = browser.cookies[django_settings.SESSION_COOKIE_NAME].value
    intervention_id = uuid.uuid4()
    pixel_path = urlsplit(open_pixel_url(intervention_id)).path
    link_path = urlsplit(recovery_url(shop.store.pk, "cart-1", intervention_id)).path

    database_url = processes.test_database_url()
    proxy = CuttableProxy(urlsplit(database_url).port or 5432)
    server = Daphne(DATABASE_URL=through_proxy(database_url, proxy.port), DATABASE_POOL_TIMEOUT="2")
    try:
        server.start()
        session = requests.Session()
        session.cookies.set(django_settings.SESSION_COOKIE_NAME, session_cookie)
        assert session.get(f"{server.url}/admin/", timeout=10).status_code == 200
        proxy.cut()
        admin = session.get(f"{server.url}/admin/", timeout=15)
        link = session.get(f"{server.url}{link_path}", timeout=15, allow_redirects=False)
        pixel = session.get(f"{server.url}{pixel_path}", timeout=15)
    finally:
        server.stop()
        proxy.stop()

    for answer in (admin, link):
        assert answer.status_code == 503, server.output()
        assert answer.headers["Retry-After"] == "5"
        assert answer.json()["error"]["code"] == "database_unavailable"
    assert pixel.status_code == 200
    assert pixel.headers["Content-Type"] == "image/gif"
