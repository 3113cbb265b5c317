"""Real processes for end-to-end and fault tests: Celery worker and beat, daphne, redis-server.

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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
QUEUES = "email,sms,push,websocket,scheduled,retries"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_env(redis_url: str, provider_url: str = "", **extra: str) -> dict[str, str]:
    database = connection.settings_dict  # the test database, not the configured one
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{database['USER'] or 'postgres'}@{database['HOST'] or '127.0.0.1'}:"
        f"{database['PORT'] or 5432}/{database['NAME']}",
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "LOG_FORMAT": "console",
        "STUB_PROVIDER_URL": provider_url,
        "EMAIL_TRANSPORT": "tests.support.http_provider.HttpProviderTransport",
        "SMS_TRANSPORT": "tests.support.http_provider.HttpProviderTransport",
        "PYTHONPATH": str(ROOT),
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


def redis_command(port: int) -> list[str]:
    server = shutil.which("redis-server") or "/usr/bin/redis-server"
    return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
