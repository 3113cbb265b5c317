"""How many idle WebSocket connections one daphne process holds, and what each costs.

    .venv/bin/python bench/ws_idle.py --connections 10000 --concurrency 200 --hold 30

Starts one daphne (port 18180) on a fresh database, opens --connections user-room
connections (one shopper each, all authenticated, registered and subscribed) with at
most --concurrency handshakes in flight, holds them --hold seconds (heartbeats flow),
then checks a sample still answers. Reports connect-storm time and failures, the
server's RSS per connection and its CPU. Bounded: gives up after --timeout seconds.
"""

import argparse
import asyncio
import json
import random
import time

import websockets
from ws_server import Server, issue_tokens, prepare_store, raise_open_files


async def open_all(server: Server, users: list[str], tokens: list[str], concurrency: int):
    gate = asyncio.Semaphore(concurrency)
    sockets: list = []
    failures: dict[str, int] = {}

    async def one(user: str, token: str) -> None:
        async with gate:
            try:
                socket = await websockets.connect(
                    f"{server.ws}/ws/user/{user}/?token={token}",
                    open_timeout=30,
                    ping_interval=None,
                    max_queue=4,
                )
                greeting = json.loads(await asyncio.wait_for(socket.recv(), 30))
                assert greeting["type"] == "config", greeting
                sockets.append(socket)
            except Exception as exc:
                name = type(exc).__name__
                failures[name] = failures.get(name, 0) + 1

    await asyncio.gather(*(one(u, t) for u, t in zip(users, tokens, strict=True)))
    return sockets, failures


async def still_alive(sockets: list, sample: int) -> int:
    alive = 0
    for socket in random.sample(sockets, min(sample, len(sockets))):
        try:
            await socket.send(json.dumps({"type": "heartbeat", "payload": {}, "messageId": "p"}))
            while True:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 5))
                if frame["type"] == "heartbeat" and frame["payload"].get("reply_to") == "p":
                    alive += 1
                    break
        except Exception:
            pass
    return alive


async def main(args: argparse.Namespace) -> None:
    raise_open_files()
    store = prepare_store()
    users = [f"idle-{i}" for i in range(args.connections)]
    tokens = issue_tokens(store["store_id"], users)
    server = Server(
        18180,
        daphne_args=tuple(args.daphne_arg),
        WS_GC_FREEZE="1" if args.gc_freeze else "0",
    ).start()
    try:
        await asyncio.sleep(1)
        rss_before, cpu_before = server.rss_kib(), server.cpu_seconds()
        started = time.monotonic()
        sockets, failures = await asyncio.wait_for(
            open_all(server, users, tokens, args.concurrency), args.timeout
        )
        storm = time.monotonic() - started
        cpu_storm = server.cpu_seconds() - cpu_before
        await asyncio.sleep(args.hold)
        rss_after = server.rss_kib()
        cpu_hold = server.cpu_seconds() - cpu_before - cpu_storm
        alive = await still_alive(sockets, 100)
        result = {
            "connections_open": len(sockets),
            "failures": failures,
            "connect_storm_seconds": round(storm, 1),
            "handshakes_per_second": round(len(sockets) / storm),
            "server_cpu_seconds_during_storm": round(cpu_storm, 1),
            "server_cpu_percent_while_idle": round(100 * cpu_hold / args.hold, 1),
            "server_rss_mib_before": round(rss_before / 1024),
            "server_rss_mib_after": round(rss_after / 1024),
            "kib_per_connection": round((rss_after - rss_before) / max(1, len(sockets)), 1),
            "sample_alive_after_hold": f"{alive}/100",
            "gc_freeze": args.gc_freeze,
        }
        print(json.dumps(result, indent=2))
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    finally:
        server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--hold", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--gc-freeze", type=int, default=1)
    parser.add_argument(
        "--daphne-arg",
        action="append",
        default=[],
        help="passed to daphne, e.g. --daphne-arg=--websocket_connect_timeout=30",
    )
    asyncio.run(main(parser.parse_args()))
