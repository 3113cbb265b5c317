"""Trigger → frame latency: HTTP POST /api/v1/interventions sent → `intervention` frame
received by a `websockets` client, with --users shoppers connected.

    .venv/bin/python bench/ws_latency.py --rate 100 --duration 20 --users 1000
    .venv/bin/python bench/ws_latency.py --rate 500 --duration 20 --users 1000 --servers 2
    .venv/bin/python bench/ws_latency.py --rate 500 --duration 20 --mode publish

--mode http (default) measures the whole path: API, decision, Postgres, transport, frame.
--mode publish calls the transport's publish directly (no HTTP, no Postgres), to separate
the real-time layer's share from the pipeline's.

Starts --servers daphne processes (ports 18181+) sharing Redis; users and POSTs are
spread over them round-robin (so with 2 servers, half the frames cross processes).
The load is open-loop (a POST every 1/rate s, whatever the server's pace) from a separate
process, so a slow server shows up as latency instead of a politely lower rate. Clients
ack every frame, as the storefront client does. Bounded by --duration plus 10 s.
"""

import argparse
import asyncio
import json
import multiprocessing
import random
import time
import uuid

import httpx
import websockets
from ws_server import (
    Server,
    heartbeat,
    issue_tokens,
    percentile,
    prepare_store,
    raise_open_files,
)


def publish_directly(
    store_id: str, users: list[str], rate: float, duration: float, start_at: float, results
) -> None:
    """--mode publish: the transport's hot path alone (Lua append + PUBLISH), no HTTP, no DB."""
    import os

    from ws_server import BASE_ENV

    os.environ.update(BASE_ENV)
    import django

    django.setup()
    from realtime.publish import publish_frame

    sent: dict[str, tuple[float, float, int]] = {}
    while time.time() < start_at:
        time.sleep(0.001)
    t0 = time.monotonic()
    for index in range(int(rate * duration)):
        delay = t0 + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        bench_id = uuid.uuid4().hex
        t_send = time.time()
        publish_frame(
            store_id,
            random.choice(users),
            "intervention",
            {
                "id": bench_id,
                "kind": "trigger",
                "content": {"title": "Bench", "bench_id": bench_id},
                "cart": None,
                "discount": None,
                "expires_at": None,
            },
            bench_id,
        )
        sent[bench_id] = (t_send, time.time(), 201)
    results.put(sent)


def generate(
    urls: list[str],
    api_key: str,
    users: list[str],
    rate: float,
    duration: float,
    start_at: float,
    results,
) -> None:
    async def run() -> None:
        sent: dict[str, tuple[float, float, int]] = {}
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def post(index: int) -> None:
                bench_id = uuid.uuid4().hex
                body = {
                    "user_id": random.choice(users),
                    "channel": "websocket",
                    "personalization": {"title": "Bench", "body": "Latency", "bench_id": bench_id},
                }
                t_send = time.time()
                try:
                    response = await client.post(
                        f"{urls[index % len(urls)]}/api/v1/interventions",
                        json=body,
                        headers={"Authorization": f"Api-Key {api_key}"},
                    )
                    status = response.status_code
                except httpx.HTTPError:
                    status = 0
                sent[bench_id] = (t_send, time.time(), status)

            tasks = []
            total = int(rate * duration)
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            t0 = time.monotonic()
            for index in range(total):
                delay = t0 + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post(index)))
            await asyncio.gather(*tasks)
        results.put(sent)

    asyncio.run(run())


async def read(socket, received: dict[str, float], closed: list, ack: int) -> None:
    try:
        async for text in socket:
            frame = json.loads(text)
            if frame["type"] != "intervention":
                continue
            received[frame["payload"]["content"]["bench_id"]] = time.time()
            if ack:
                await socket.send(
                    json.dumps({"type": "ack", "payload": {"messageId": frame["messageId"]}})
                )
    except websockets.ConnectionClosed:
        pass
    # The engine closes (4408) a socket silent for WS_IDLE_TIMEOUT_SECONDS; its shopper's
    # frames would look lost, so closed sockets are counted.
    closed.append(socket.close_code)


async def main(args: argparse.Namespace) -> None:
    raise_open_files()
    store = prepare_store()
    users = [f"user-{i}" for i in range(args.users)]
    tokens = issue_tokens(store["store_id"], users)
    env = {"WS_GC_FREEZE": "1" if args.gc_freeze else "0"}
    servers = [Server(18181 + i, **env).start() for i in range(args.servers)]
    received: dict[str, float] = {}
    sockets = []
    heartbeats: list[float] = []
    closed: list[int | None] = []
    try:
        for index, (user, token) in enumerate(zip(users, tokens, strict=True)):
            server = servers[index % len(servers)]
            socket = await websockets.connect(
                f"{server.ws}/ws/user/{user}/?token={token}", ping_interval=None
            )
            config = json.loads(await socket.recv())
            heartbeats.append(float(config.get("payload", {}).get("heartbeat_seconds") or 25))
            sockets.append(socket)

        readers = [asyncio.create_task(read(s, received, closed, args.ack)) for s in sockets]
        readers += [
            asyncio.create_task(heartbeat(s, seconds))
            for s, seconds in zip(sockets, heartbeats, strict=True)
        ]
        cpu_before = [s.cpu_seconds() for s in servers]
        results: multiprocessing.Queue = multiprocessing.Queue()
        start_at = time.time() + 1
        if args.mode == "publish":
            generator = multiprocessing.Process(
                target=publish_directly,
                args=(store["store_id"], users, args.rate, args.duration, start_at, results),
            )
        else:
            generator = multiprocessing.Process(
                target=generate,
                args=(
                    [s.url for s in servers],
                    store["api_key"],
                    users,
                    args.rate,
                    args.duration,
                    start_at,
                    results,
                ),
            )
        generator.start()
        sent = await asyncio.wait_for(asyncio.to_thread(results.get), args.duration + 60)
        generator.join(10)
        await asyncio.sleep(2)  # stragglers
        cpu = [
            round(100 * (s.cpu_seconds() - b) / args.duration)
            for s, b in zip(servers, cpu_before, strict=True)
        ]
        accepted = {k: v for k, v in sent.items() if v[2] in (200, 201, 202)}
        latencies = [1000 * (received[k] - v[0]) for k, v in accepted.items() if k in received]
        http = [1000 * (v[1] - v[0]) for v in accepted.values()]
        statuses: dict[int, int] = {}
        for v in sent.values():
            statuses[v[2]] = statuses.get(v[2], 0) + 1
        print(
            json.dumps(
                {
                    "mode": args.mode,
                    "rate_per_second": args.rate,
                    "duration_seconds": args.duration,
                    "servers": args.servers,
                    "users_connected": len(sockets),
                    "posts": len(sent),
                    "http_statuses": statuses,
                    "frames_received": len(latencies),
                    "frames_missing": len(accepted) - len(latencies),
                    "sockets_closed_by_server": len(closed),
                    "trigger_to_frame_ms": {
                        "p50": round(percentile(latencies, 0.50), 1),
                        "p95": round(percentile(latencies, 0.95), 1),
                        "p99": round(percentile(latencies, 0.99), 1),
                        "max": round(max(latencies, default=float("nan")), 1),
                    },
                    "http_response_ms": {
                        "p50": round(percentile(http, 0.50), 1),
                        "p99": round(percentile(http, 0.99), 1),
                    },
                    "server_cpu_percent": cpu,
                    "acks": args.ack,
                    "gc_freeze": args.gc_freeze,
                },
                indent=2,
            )
        )
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=100)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--ack", type=int, default=1)
    parser.add_argument("--gc-freeze", type=int, default=1)
    parser.add_argument(
        "--mode",
        choices=["http", "publish"],
        default="http",
        help="http: POST /api/v1/interventions (whole pipeline); publish: the transport alone",
    )
    asyncio.run(main(parser.parse_args()))
