"""Shared set-up for the WebSocket benchmarks: a fresh database, one store, and real
daphne processes on 127.0.0.1 (ports 18180+), each measured through /proc.

Database `ie_realtime_bench` (dropped and re-created), Redis db 2 (only `ie:ws:*` keys
are deleted). Nothing leaves 127.0.0.1.
"""

import asyncio
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import redis
import websockets

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Overridable so that two people benchmarking on one machine do not drop each other's.
DB = os.environ.get("BENCH_DB", "ie_realtime_bench")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/2")
# Added to every server's port, for the same reason.
PORT_OFFSET = int(os.environ.get("BENCH_PORT_OFFSET", "0"))
BASE_ENV = {
    **os.environ,
    "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
    "REDIS_URL": REDIS_URL,
    "LOG_LEVEL": "WARNING",
    "DJANGO_SETTINGS_MODULE": "config.settings",
    # A benchmark on this machine: the development key, and rates the load never reaches.
    "ALLOW_DEV_SECRET_KEY": "1",
    "API_RATE_PER_KEY": "1000000/s",
    "API_RATE_UNAUTHENTICATED": "1000000/s",
}


def raise_open_files() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def heartbeat(socket, seconds: float) -> None:
    """What the storefront client does (docs/websocket-protocol.md#keep-alive): a
    heartbeat every ``heartbeat_seconds`` of the config frame, the first one jittered.
    Without it the engine closes a shopper who received no frame (so sent no ack) for
    WS_IDLE_TIMEOUT_SECONDS (75 s), and later frames for that shopper reach no one."""
    await asyncio.sleep(seconds * random.uniform(0.5, 1.0))
    try:
        while True:
            await socket.send(json.dumps({"type": "heartbeat", "payload": {}}))
            await asyncio.sleep(seconds)
    except websockets.ConnectionClosed:
        pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def prepare_store(max_connections: int = 50_000) -> dict[str, str]:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter("ie:ws:*", count=5000):
        client.delete(key)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=BASE_ENV, check=True
    )
    out = subprocess.run(
        [sys.executable, "manage.py", "create_store", "--name", "Bench"],
        cwd=ROOT,
        env=BASE_ENV,
        check=True,
        capture_output=True,
        text=True,
    )
    store = json.loads(out.stdout.strip().splitlines()[-1])
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}", autocommit=True) as conn:
        conn.execute(
            "UPDATE stores_store SET max_websocket_connections = %s, "
            "frequency_cap_per_hour = 1000 WHERE id = %s",
            [max_connections, store["store_id"]],
        )
    return store


def issue_tokens(store_id: str, user_ids: list[str]) -> list[str]:
    """Tokens minted in a child process with the servers' settings (same SECRET_KEY)."""
    script = (
        "import django, json, sys; django.setup()\n"
        "from realtime.tokens import issue_token\n"
        "users = json.load(sys.stdin)\n"
        f"print(json.dumps([issue_token({store_id!r}, 'user', u, ttl=7200)[0] for u in users]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=BASE_ENV,
        input=json.dumps(user_ids),
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of one process so far; 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Server:
    def __init__(
        self,
        port: int,
        app: str = "config.asgi:application",
        cwd: Path = ROOT,
        daphne_args: tuple[str, ...] = (),
        **env: str,
    ):
        self.port = port + PORT_OFFSET
        self.daphne_args = daphne_args
        self.app = app
        self.cwd = cwd
        self.url = f"http://127.0.0.1:{self.port}"
        self.ws = f"ws://127.0.0.1:{self.port}"
        self.env = {**BASE_ENV, **env}
        self.log = open(f"/tmp/ws-bench-{self.port}.log", "w")  # noqa: SIM115
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        return [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(self.port), *self.daphne_args,
                self.app]  # fmt: skip

    def start(self) -> "Server":
        self.process = subprocess.Popen(
            self.command(),
            cwd=self.cwd,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=raise_open_files,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name()} on {self.port} did not start; see {self.log.name}")

    def name(self) -> str:
        return "daphne"

    def rss_kib(self) -> int:
        assert self.process
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0

    def cpu_seconds(self) -> float:
        return sum(process_cpu_seconds(pid) for pid in self.pids())

    def pids(self) -> list[int]:
        return [self.process.pid] if self.process else []

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


class HttpServer(Server):
    """The engine's HTTP server as the Procfile starts it (gunicorn, ``config/gunicorn.py``)
    with ``workers`` worker processes; its CPU is the master's and every worker's."""

    def __init__(self, port: int, workers: int, cwd: Path = ROOT, **env: str):
        super().__init__(port, cwd=cwd, **env)
        self.workers = workers

    def name(self) -> str:
        return f"gunicorn ({self.workers} workers)"

    def command(self) -> list[str]:
        return [str(BIN / "gunicorn"), "-c", "python:config.gunicorn", "-w", str(self.workers),
                "-b", f"127.0.0.1:{self.port}", self.app]  # fmt: skip

    def pids(self) -> list[int]:
        if not self.process:
            return []
        master = self.process.pid
        try:
            children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        except FileNotFoundError:
            children = []
        return [master, *(int(pid) for pid in children)]
