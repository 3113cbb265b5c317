"""Real processes for end-to-end, cross-process and fault tests: Celery worker and beat,
daphne, the HTTP server (gunicorn), redis-server. The one helper for them.

Each process gets the test database and its own Redis URL through the environment,
exactly as production processes get theirs.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUEUES = "email,sms,push,websocket,scheduled,retries,campaigns,webhooks"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_database_url() -> str:
    database = connection.settings_dict  # the test database, not the configured one
    credentials = (database["USER"] or "postgres") + (
        f":{database['PASSWORD']}" if database.get("PASSWORD") else ""
    )
    host, port = database["HOST"] or "127.0.0.1", database["PORT"] or 5432
    return f"postgres://{credentials}@{host}:{port}/{database['NAME']}"


def engine_env(
    redis_url: str, provider: dict[str, str] | None = None, **extra: str
) -> dict[str, str]:
    """The environment of an engine process; ``provider`` is a stub provider's
    ``environment()``, which points the real email and SMS transports at it."""
    env = {
        **os.environ,
        "DATABASE_URL": test_database_url(),
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "LOG_FORMAT": "console",
        "PYTHONPATH": str(ROOT),
        # Not what these tests are about; without a provider nothing is sent anyway.
        "EMAIL_RATE_LIMIT": "0",
        "SMS_RATE_LIMIT": "0",
        **(provider or {}),
    }
    env.update(extra)
    return env


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


@contextmanager
def running(
    command: list[str], env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        kill(process)


def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        process.wait(timeout=10)


def worker_command() -> list[str]:
    return [
        str(BIN / "celery"), "-A", "config", "worker", "-P", "prefork", "-c", "1", "-Q", QUEUES,
        "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "INFO",
    ]  # fmt: skip


def beat_command(schedule_file: Path) -> list[str]:
    return [str(BIN / "celery"), "-A", "config", "beat", "-l", "INFO", "-s", str(schedule_file)]


def daphne_command(port: int) -> list[str]:
    return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"]


def http_server_command(port: int, workers: int) -> list[str]:
    """The Procfile's ``web``: the HTTP API on gunicorn's worker processes."""
    return [str(BIN / "gunicorn"), "-c", "python:config.gunicorn", "-w", str(workers),
            "-b", f"127.0.0.1:{port}", "config.asgi:application"]  # fmt: skip


def redis_command(port: int) -> list[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]


class Daphne:
    """A real daphne on the test database and the machine's Redis (cross-process and
    browser tests), started on a free port and stopped by ``stop()``."""

    name = "daphne"

    def __init__(self, port: int | None = None, **env: str):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}"
        self.env = engine_env(
            settings.REDIS_URL,
            DATABASE_POOL_MIN_SIZE="1",
            DATABASE_POOL_MAX_SIZE="4",
            WEBSOCKET_TRANSPORT="realtime.transport.WebSocketTransport",
            SECRET_KEY=settings.SECRET_KEY,
            LOG_LEVEL="WARNING",
            **env,
        )
        # Closed in stop(); the server writes to it for its whole life.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"{self.name}-{self.port}-", suffix=".log"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return daphne_command(self.port)

    def start(self) -> "Daphne":
        # Its own process group: stop() reaches gunicorn's workers too.
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.env, stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

        def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            try:
                return requests.get(f"{self.url}/health", timeout=1).status_code == 200
            except requests.RequestException:  # refused, or too slow while starting
                return False

        try:
            wait_for(serving, timeout=30, interval=0.2)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"{self.name} did not start in 30 s:\n{self.output()}") from None
        return self

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                kill(self.process)
        self.log.close()


class HttpServer(Daphne):
    """The HTTP server as the Procfile's ``web`` starts it (gunicorn with ``workers``
    uvicorn workers, config/gunicorn.py), on the same database and Redis as ``Daphne``:
    the split layout of docs/operations.md#process-layout."""

    name = "gunicorn"

    def __init__(self, port: int | None = None, workers: int = 2, **env: str):
        super().__init__(port, **env)
        self.workers = workers

    def command(self) -> list[str]:
        return http_server_command(self.port, self.workers)
