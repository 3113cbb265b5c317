"""Bulk intake, open loop: realistic batches through POST /api/v1/interventions/batch,
or events through POST /api/v1/events (one each) or /api/v1/events/batch (--mode).

Starts its own daphne and Celery worker (from --root, so a checkout of another commit
can run beside this one: ``--root /tmp/base``) against database `ie_bulk_bench` and
Redis db 5, both wiped first. Batches of --batch-size triggers, each with a shopper
profile and a cart of --cart-lines lines (image and product URLs, as a storefront
sends them), are posted on a fixed schedule that does not wait for answers (open loop)
at --rate triggers per second for --duration seconds; then it waits until every
intervention has gone out through the log email transport.

    .venv/bin/python bench/bulk_intake.py --rate 300 --duration 20 --batch-size 500 --cart-lines 20
    .venv/bin/python bench/bulk_intake.py --mode events-batch --rate 1000 --duration 10

With --mode events-batch, --deciders worker processes (solo pool; 2 stands for the
Procfile's prefork worker with its two children) serve the ``decisioning`` queue, and
their CPU is counted with the rest.

Reports accepted/s (items answered 201), decided/s (rows created, from created_at),
delivered/s (rows sent, from sent_at), each measured from the first request; HTTP
latency per batch; and CPU per intervention counted from /proc: the web and worker
processes, the PostgreSQL backends serving the bench database, the client, and the
whole machine (which includes other tenants of a shared machine: see load_before).
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import redis

HERE = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB = os.environ.get("BENCH_DATABASE", "ie_bulk_bench")
TICK = os.sysconf("SC_CLK_TCK")


def connect(database: str) -> psycopg.Connection:
    """The shared PostgreSQL runs out of connections when neighbours are busy
    ("too many clients"): wait for one rather than lose the run."""
    for _ in range(120):
        try:
            return psycopg.connect(
                f"postgresql://postgres@127.0.0.1:5432/{database}", autocommit=True
            )
        except psycopg.OperationalError:
            time.sleep(0.5)
    raise RuntimeError("no PostgreSQL connection for two minutes")


LINE = {
    "name": "Two-person ultralight tent, green",
    "price": "249.90",
    "quantity": 1,
    "image": "https://cdn.acme.test/products/tent-2p-green/main-1200x1200.jpg",
    "url": "https://shop.acme.test/products/tent-2p-green?variant=0001",
}


def trigger(n: int, run: str, lines: int) -> dict:
    return {
        "user_id": f"shopper-{n}",
        "cart_id": f"{run}-cart-{n}",
        "channel": "email",
        "personalization": {
            "subject": "Your tent is waiting",
            "text": "Come back",
            "coupon": "SAVE10",
        },
        "user": {
            "email": f"shopper-{n}@example.test",
            "phone": "+33612345678",
            "first_name": "Camille",
            "locale": "fr-FR",
            "timezone": "Europe/Paris",
            "segment": "returning",
        },
        "cart": {
            "value": f"{249.90 * lines:.2f}",
            "currency": "EUR",
            "items": [{**LINE, "sku": f"SKU-{(n + i) % 500:04d}"} for i in range(lines)],
        },
    }


def event(n: int, run: str, lines: int) -> dict:
    """The same shopper and cart as ``trigger``, as a cart_abandoned event that the
    bench's triggered campaign answers with an email."""
    body = trigger(n, run, lines)
    return {
        "type": "cart_abandoned",
        **{k: body[k] for k in ("user_id", "cart_id", "user", "cart")},
    }


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def redis_server_pid() -> int | None:
    """The Redis server's pid, to count its CPU (shared with every other user of it)."""
    for status in Path("/proc").glob("[0-9]*/comm"):
        try:
            if status.read_text().strip() == "redis-server":
                return int(status.parent.name)
        except OSError:
            continue
    return None


def machine_busy_seconds() -> float:
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK


class Meter:
    """CPU of our processes, PostgreSQL backends of the bench database included: they
    come and go, so each is sampled and its highest reading kept."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.start = {name: cpu_seconds(pid) for name, pid in pids.items()}
        self.backends: dict[int, tuple[float, float]] = {}
        self.machine_start = machine_busy_seconds()
        self.conn = connect("postgres")
        self.sample()

    def sample(self) -> None:
        pids = [
            r[0]
            for r in self.conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB]
            ).fetchall()
        ]
        for pid in pids:
            now = cpu_seconds(pid)
            first, _ = self.backends.get(pid, (now, now))
            self.backends[pid] = (first, max(now, self.backends.get(pid, (0, 0))[1]))

    def totals(self) -> dict[str, float]:
        totals = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}
        totals["postgres"] = sum(last - first for first, last in self.backends.values())
        totals["machine"] = machine_busy_seconds() - self.machine_start
        return totals


def prepare(root: Path, env: dict[str, str]) -> str:
    with connect("postgres") as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "-v0"], cwd=root, env=env, check=True)
    out = subprocess.run(
        [*manage, "create_store", "--name", "Bench"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    subprocess.run(
        [
            *manage,
            "shell",
            "-c",
            "from campaigns.models import Campaign; from stores.models import Store; "
            "Campaign.objects.create(store=Store.objects.get(), name='Abandoned carts', "
            "trigger='cart_abandoned', channel='email'); Store.objects.update("
            "quiet_hours_start=None, quiet_hours_end=None, frequency_cap_per_hour=0, channel_caps_per_day={})",
        ],
        cwd=root,
        env=env,
        check=True,
    )
    return json.loads(out.strip().splitlines()[-1])["api_key"]


async def offer(args: argparse.Namespace, bases: list[str], headers: dict, meter: Meter) -> dict:
    """Posts a batch every batch_size / rate seconds whether or not earlier ones were
    answered; returns the answers' figures."""
    run = uuid.uuid4().hex[:6]
    count = int(args.rate * args.duration)
    size = args.batch_size if args.mode != "events" else 1

    def body(s: int) -> dict:
        if args.mode == "batch":
            return {
                "interventions": [
                    trigger(n, run, args.cart_lines) for n in range(s, min(s + size, count))
                ]
            }
        if args.mode == "events-batch":
            return {
                "events": [event(n, run, args.cart_lines) for n in range(s, min(s + size, count))]
            }
        return event(s, run, args.cart_lines)

    bodies = [json.dumps(body(s)) for s in range(0, count, size)]
    path = {
        "batch": "/api/v1/interventions/batch",
        "events": "/api/v1/events",
        "events-batch": "/api/v1/events/batch",
    }[args.mode]
    latencies: list[float] = []
    accepted = failed = 0
    last_answer = 0.0

    async def post(http: httpx.AsyncClient, index: int, body: str) -> None:
        nonlocal accepted, failed, last_answer
        sent = time.perf_counter()
        response = await http.post(
            f"{bases[index % len(bases)]}{path}", content=body, headers=headers
        )
        last_answer = time.perf_counter()
        latencies.append(last_answer - sent)
        if response.status_code == 202:  # an event, with the interventions it started
            accepted += len(response.json()["interventions"])
            return
        if response.status_code != 207:
            failed += body.count('"user_id"')
            print("answer", response.status_code, response.text[:200], file=sys.stderr)
            return
        answer = response.json()
        # A trigger is created (201); an event in bulk is accepted for decisioning (202).
        accepted += sum(1 for r in answer["results"] if r["status"] in (201, 202))
        failed += answer["failed"]

    async def sampler() -> None:
        while True:
            await asyncio.to_thread(meter.sample)
            await asyncio.sleep(0.5)

    interval = size / args.rate
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=1000)) as http:
        sampling = asyncio.create_task(sampler())
        began = time.perf_counter()
        tasks = []
        for index, body in enumerate(bodies):
            await asyncio.sleep(max(0.0, began + index * interval - time.perf_counter()))
            tasks.append(asyncio.create_task(post(http, index, body)))
        await asyncio.gather(*tasks)
        sampling.cancel()
    return {
        "count": count,
        "began": began,
        "accepted": accepted,
        "failed": failed,
        "answered_after_s": last_answer - began,
        "batch_latencies": latencies,
    }


def progress() -> tuple[int, int, datetime | None, datetime | None]:
    with connect(DB) as conn:
        return conn.execute(
            "SELECT count(*), count(sent_at), max(created_at), max(sent_at)"
            " FROM interventions_intervention"
        ).fetchone()


def lags() -> dict[str, list[float]]:
    """Where an intervention's time went, p50 / p95 / p99 in seconds: from its event's
    arrival to its decision (events only), and from its decision to its send."""
    with connect(DB) as conn:
        row = conn.execute(
            """SELECT
                 percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY
                   extract(epoch FROM i.created_at - e.received_at)),
                 percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY
                   extract(epoch FROM i.sent_at - i.created_at))
               FROM interventions_intervention i
               LEFT JOIN interventions_cartevent e ON e.cart_id = i.cart_id"""
        ).fetchone()
    return {
        "event_to_decision_s": [round(x, 3) for x in row[0] or []],
        "decision_to_send_s": [round(x, 3) for x in row[1] or []],
    }


def wait_for_delivery(meter: Meter, accepted: int) -> None:
    """Until every accepted intervention went out, or nothing moved for a minute (a lost
    task waits for beat's sweeper, which this bench does not run)."""
    moved, last_seen = time.monotonic(), -1
    while time.monotonic() - moved < 60:
        meter.sample()
        _, sent, _, _ = progress()
        if sent >= accepted:
            return
        if sent != last_seen:
            moved, last_seen = time.monotonic(), sent
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, default=HERE, help="checkout whose code serves")
    parser.add_argument(
        "--mode",
        choices=["batch", "events", "events-batch"],
        default="batch",
        help="batches of triggers, one cart_abandoned event per POST /api/v1/events, or "
        "batches of them through POST /api/v1/events/batch; a triggered email campaign "
        "answers the events",
    )
    parser.add_argument("--rate", type=float, default=300, help="offered triggers per second")
    parser.add_argument("--duration", type=float, default=20, help="seconds of offered load")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--cart-lines", type=int, default=3)
    parser.add_argument("--workers", type=int, default=16, help="worker threads (Procfile)")
    parser.add_argument("--web", type=int, default=1, help="daphne processes")
    parser.add_argument(
        "--deciders", type=int, default=1, help="decisioning worker processes (events-batch)"
    )
    parser.add_argument("--port", type=int, default=18577)
    args = parser.parse_args()

    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/5"),
        "PYTHONPATH": str(args.root.resolve()),
        "LOG_LEVEL": "WARNING",
        "DJANGO_STRUCTLOG_STATUS_4XX_LOG_LEVEL": "WARNING",
        "ALLOW_DEV_SECRET_KEY": "1",
        "API_RATE_PER_KEY": "1000000/s",
        "API_RATE_UNAUTHENTICATED": "1000000/s",
    }
    root = args.root.resolve()
    key = prepare(root, env)
    headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}
    bases = [f"http://127.0.0.1:{args.port + n}" for n in range(args.web)]
    logs = open("/tmp/bench-bulk-intake.log", "wb")  # noqa: SIM115 - lives as long as the servers
    webs = [
        subprocess.Popen(
            [str(BIN / "daphne"), "-p", str(args.port + n), "config.asgi:application"],
            cwd=root,
            env=env,
            stdout=logs,
            stderr=subprocess.STDOUT,
        )
        for n in range(args.web)
    ]
    worker = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "-P",
            "threads",
            "-c",
            str(args.workers),
            "-Q",
            "email,sms,push,websocket,scheduled,retries",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "WARNING",
        ],
        cwd=root,
        env=env,
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    deciders = []
    for n in range(args.deciders if args.mode == "events-batch" else 0):
        deciders.append(
            subprocess.Popen(
                [
                    str(BIN / "celery"),
                    "-A",
                    "config",
                    "worker",
                    "-P",
                    "solo",
                    "-Q",
                    "decisioning",
                    "-n",
                    f"decisioning{n}@%h",
                    "--without-gossip",
                    "--without-mingle",
                    "--without-heartbeat",
                    "-l",
                    "WARNING",
                ],
                cwd=root,
                env=env,
                stdout=logs,
                stderr=subprocess.STDOUT,
            )
        )
    try:
        for url in bases:
            for _ in range(150):
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        time.sleep(2)  # the worker connects to the broker
        load_before = os.getloadavg()
        meter = Meter(
            {
                **{f"web{n}": w.pid for n, w in enumerate(webs)},
                "worker": worker.pid,
                **{f"decisioning{n}": d.pid for n, d in enumerate(deciders)},
                **({"redis": redis_pid} if (redis_pid := redis_server_pid()) else {}),
                "client": os.getpid(),
            }
        )
        t0 = datetime.now(UTC)
        offered = asyncio.run(offer(args, bases, headers, meter))
        wait_for_delivery(meter, offered["accepted"])
        created, sent, last_created, last_sent = progress()
        cpu = meter.totals()
        engine = sum(v for k, v in cpu.items() if k not in ("client", "machine", "redis"))
        latencies = offered.pop("batch_latencies")

        def per_s(n: int, last: datetime | None) -> float:
            return round(n / (last - t0).total_seconds(), 1) if last else 0.0

        print(
            json.dumps(
                {
                    "root": str(root),
                    "mode": args.mode,
                    "offered_per_s": args.rate,
                    "batch_size": args.batch_size,
                    "cart_lines": args.cart_lines,
                    "count": offered["count"],
                    "accepted": offered["accepted"],
                    "failed": offered["failed"],
                    "accepted_per_s": round(offered["accepted"] / offered["answered_after_s"], 1),
                    "decided_per_s": per_s(created, last_created),
                    "delivered": sent,
                    "delivered_per_s": per_s(sent, last_sent),
                    "batch_http_p50_s": round(statistics.median(latencies), 2),
                    "batch_http_max_s": round(max(latencies), 2),
                    "lag_p50_p95_p99": lags(),
                    "cpu_ms_per_intervention": {
                        k: round(v * 1000 / max(sent, 1), 2) for k, v in cpu.items()
                    },
                    "engine_cpu_ms_per_intervention": round(engine * 1000 / max(sent, 1), 2),
                    # Redis is shared with the machine's other tenants: an upper bound.
                    "engine_and_redis_cpu_ms_per_intervention": round(
                        (engine + cpu.get("redis", 0)) * 1000 / max(sent, 1), 2
                    ),
                    "load_after": [round(x, 2) for x in os.getloadavg()],
                    "load_before": [round(x, 2) for x in load_before],
                },
                indent=2,
            )
        )
    finally:
        for process in [*webs, worker, *deciders]:
            process.terminate()
        for process in [*webs, worker, *deciders]:
            process.wait()


if __name__ == "__main__":
    main()
