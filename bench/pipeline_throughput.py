"""Interventions per second through the API, to a stub sender.

Starts its own daphne and Celery worker against the local PostgreSQL and Redis
(database `ie_bench`, Redis db 15, both wiped first), creates a store, then sends
explicit triggers either one POST each (--mode single) or through the batch
endpoint (--mode batch), and waits until every intervention has been sent.

    .venv/bin/python bench/pipeline_throughput.py --mode single --count 3000 --concurrency 32
    .venv/bin/python bench/pipeline_throughput.py --mode batch --count 20000 --batch-size 500

Reports accepted/s (API), end-to-end sent/s, HTTP latency percentiles and the
p50/p99 decision latency from the engine's own histogram on /metrics.
"""

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DB = "ie_bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def histogram_quantile(metrics: str, name: str, q: float) -> float:
    buckets = []
    for match in re.finditer(rf'^{name}_bucket{{le="([^"]+)"}} ([0-9.e+]+)$', metrics, re.M):
        buckets.append((float("inf") if match[1] == "+Inf" else float(match[1]), float(match[2])))
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


def prepare(env: dict[str, str]) -> str:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    out = subprocess.run(
        [sys.executable, "manage.py", "create_store", "--name", "Bench"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    key = json.loads(out.strip().splitlines()[-1])["api_key"]
    subprocess.run(
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from stores.models import Store; Store.objects.update(quiet_hours_start=None, quiet_hours_end=None, frequency_cap_per_hour=0, channel_caps_per_day={})",
        ],
        cwd=ROOT,
        env=env,
        check=True,
    )
    return key


def trigger(n: int, run: str) -> dict:
    return {
        "user_id": f"shopper-{n % 5000}",
        "cart_id": f"{run}-cart-{n}",
        "channel": "email",
        "user": {"email": f"shopper{n % 5000}@example.test"},
        "personalization": {"subject": "Your cart misses you", "text": "Come back"},
    }


async def run_single(bases: list[str], headers: dict, count: int, concurrency: int) -> list[float]:
    run, latencies, queue = uuid.uuid4().hex[:6], [], asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            started = time.perf_counter()
            response = await http.post(
                f"{bases[n % len(bases)]}/api/v1/interventions",
                json=trigger(n, run),
                headers=headers,
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.text

    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=concurrency)
    ) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return latencies


async def run_batch(
    bases: list[str], headers: dict, count: int, batch_size: int, concurrency: int
) -> list[float]:
    run, latencies = uuid.uuid4().hex[:6], []
    batches = [list(range(i, min(i + batch_size, count))) for i in range(0, count, batch_size)]
    queue = asyncio.Queue()
    for batch in batches:
        queue.put_nowait(batch)

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            started = time.perf_counter()
            body = {"interventions": [trigger(n, run) for n in batch]}
            response = await http.post(
                f"{bases[batch[0] // batch_size % len(bases)]}/api/v1/interventions/batch",
                json=body,
                headers=headers,
            )
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 207, response.text[:500]
            assert response.json()["failed"] == 0, response.text[:500]

    async with httpx.AsyncClient(timeout=300) as http:
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
    return latencies


def count_sent(env: dict[str, str]) -> int:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{DB}") as conn:
        return conn.execute(
            "SELECT count(*) FROM interventions_intervention WHERE status = 'sent'"
        ).fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["single", "batch"], default="single")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument(
        "--workers", type=int, default=16, help="delivery worker threads (as in the Procfile)"
    )
    parser.add_argument("--port", type=int, default=18077)
    parser.add_argument(
        "--web", type=int, default=1,
        help="daphne processes (ports PORT, PORT+1, ...); the client spreads requests over them "
        "as a load balancer would",
    )  # fmt: skip
    args = parser.parse_args()

    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
        "LOG_LEVEL": "WARNING",
        "DJANGO_STRUCTLOG_STATUS_4XX_LOG_LEVEL": "WARNING",
        # A benchmark on this machine: the development key, and rates the load never reaches.
        "ALLOW_DEV_SECRET_KEY": "1",
        "API_RATE_PER_KEY": "1000000/s",
        "API_RATE_UNAUTHENTICATED": "1000000/s",
    }
    key = prepare(env)
    headers = {"Authorization": f"Api-Key {key}"}
    bases = [f"http://127.0.0.1:{args.port + n}" for n in range(args.web)]
    base = bases[0]
    logs = open("/tmp/bench-pipeline.log", "wb")  # noqa: SIM115 - lives as long as the servers
    webs = [
        subprocess.Popen(
            [str(BIN / "daphne"), "-p", str(args.port + n), "config.asgi:application"],
            cwd=ROOT,
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
        cwd=ROOT,
        env=env,
        stdout=logs,
        stderr=subprocess.STDOUT,
    )
    try:
        for url in bases:
            for _ in range(100):
                try:
                    if httpx.get(f"{url}/health").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
        started = time.perf_counter()
        if args.mode == "single":
            latencies = asyncio.run(run_single(bases, headers, args.count, args.concurrency))
        else:
            latencies = asyncio.run(
                run_batch(bases, headers, args.count, args.batch_size, min(args.concurrency, 4))
            )
        accepted = time.perf_counter() - started
        deadline = time.monotonic() + 600
        while count_sent(env) < args.count and time.monotonic() < deadline:
            time.sleep(0.5)
        finished = time.perf_counter() - started
        sent = count_sent(env)
        metrics = httpx.get(f"{base}/metrics").text
        print(
            json.dumps(
                {
                    "mode": args.mode,
                    "count": args.count,
                    "accepted_per_s": round(args.count / accepted, 1),
                    "sent": sent,
                    "sent_per_s_end_to_end": round(sent / finished, 1),
                    "http_p50_ms": round(statistics.median(latencies) * 1000, 1),
                    "http_p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                    "decision_p50_ms_bucket": histogram_quantile(
                        metrics, "engine_decision_seconds", 0.5
                    )
                    * 1000,
                    "decision_p99_ms_bucket": histogram_quantile(
                        metrics, "engine_decision_seconds", 0.99
                    )
                    * 1000,
                },
                indent=2,
            )
        )
    finally:
        for process in [*webs, worker]:
            process.terminate()
        for process in [*webs, worker]:
            process.wait()


if __name__ == "__main__":
    main()
