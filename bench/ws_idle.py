"""Idle sockets and handshakes: what 10,000 connected, silent shoppers cost one daphne
process, against the bare Channels app (bench/bare_app.py) in the same run.

    .venv/bin/python bench/ws_idle.py --connections 10000 --hold 60

Starts the engine (`config.asgi`) and the bare app, one daphne each, on a fresh database
(BENCH_DB, BENCH_REDIS_URL as in ws_server.py), and, with --baseline-root, the engine at
another commit as a third target (its own `git archive`; same database and Redis: an
idle run publishes nothing, so sharing rooms is harmless). Then, one target at a time,
opens --connections user-room sockets (one shopper each) from --clients client
processes, at most --concurrency handshakes in flight per process; the server's CPU over
the first --handshake-sample of them is the handshake CPU per connection. Every socket behaves
like the storefront client (docs/websocket-protocol.md#keep-alive): it reads every frame,
answers daphne's pings, and sends a `heartbeat` every `heartbeat_seconds` of its `config`
frame (the bare app announces none: it gets the client's default, 25 s, and ignores
them). Once all are open it waits --settle seconds, then counts every server's CPU from
/proc over the same --hold seconds: idle CPU as % of one core. Reports, per target,
sockets open, refused, closed during the hold (by close code), RSS per connection, and
the machine's busy cores over the hold (the other tenants' load included).
"""

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import time
import uuid
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path

import websockets
from ws_server import DB, ROOT, Server, issue_tokens, prepare_store, raise_open_files

TICK = os.sysconf("SC_CLK_TCK")
DEFAULT_HEARTBEAT_SECONDS = 25.0


def machine_busy_cores_since(before: tuple[float, float]) -> float:
    busy, at = machine_busy()
    return (busy - before[0]) / max(at - before[1], 1e-9)


def machine_busy() -> tuple[float, float]:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK, time.monotonic()


class Shoppers:
    """One client process's share of the sockets, per target."""

    def __init__(self) -> None:
        self.sockets: dict[str, list] = {}
        self.closed: dict[str, list] = {}
        self.tasks: list[asyncio.Task] = []

    async def open(self, name: str, url: str, pairs: list, concurrency: int) -> dict:
        gate = asyncio.Semaphore(concurrency)
        failures: dict[str, int] = {}
        sockets = self.sockets.setdefault(name, [])
        closed = self.closed.setdefault(name, [])

        async def one(user: str, token: str) -> None:
            async with gate:
                query = f"?token={token}" if token else ""
                try:
                    socket = await websockets.connect(
                        f"{url}/ws/user/{user}/{query}",
                        open_timeout=60,
                        ping_interval=None,  # the server pings; the client only answers
                        max_queue=16,
                    )
                    config = json.loads(await asyncio.wait_for(socket.recv(), 60))
                except Exception as exc:
                    failures[type(exc).__name__] = failures.get(type(exc).__name__, 0) + 1
                    return
                if config.get("type") != "config":
                    failures["no_config"] = failures.get("no_config", 0) + 1
                    return
                sockets.append(socket)
                seconds = float(
                    config.get("payload", {}).get("heartbeat_seconds") or DEFAULT_HEARTBEAT_SECONDS
                )
                self.tasks.append(asyncio.create_task(self.read(socket, closed)))
                self.tasks.append(asyncio.create_task(self.heartbeat(socket, seconds)))

        await asyncio.gather(*(one(u, t) for u, t in pairs))
        return {"open": len(sockets), "failures": failures}

    async def read(self, socket, closed: list) -> None:
        try:
            async for _text in socket:
                pass
        except websockets.ConnectionClosed:
            pass
        closed.append(socket.close_code)

    async def heartbeat(self, socket, seconds: float) -> None:
        # As intervention-client.js: setInterval from the config frame, nothing at once.
        await asyncio.sleep(seconds * random.uniform(0.5, 1.0))
        try:
            while True:
                await socket.send(
                    json.dumps(
                        {
                            "type": "heartbeat",
                            "payload": {},
                            "timestamp": datetime.now(UTC).isoformat(),
                            "messageId": uuid.uuid4().hex,
                        }
                    )
                )
                await asyncio.sleep(seconds)
        except websockets.ConnectionClosed:
            pass

    def report(self) -> dict:
        return {
            name: {
                "open": sum(1 for s in sockets if s.close_code is None),
                "closed": list(self.closed.get(name, [])),
            }
            for name, sockets in self.sockets.items()
        }

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for sockets in self.sockets.values():
            await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)


def client_process(commands: Connection) -> None:
    """Runs commands from the coordinator: ("open", name, url, pairs, concurrency),
    ("report",), ("close",)."""
    raise_open_files()

    async def run() -> None:
        shoppers = Shoppers()
        loop = asyncio.get_running_loop()
        while True:
            command = await loop.run_in_executor(None, commands.recv)
            if command[0] == "open":
                commands.send(await shoppers.open(*command[1:]))
            elif command[0] == "report":
                commands.send(shoppers.report())
            else:
                await shoppers.close()
                commands.send("closed")
                return

    asyncio.run(run())


class Clients:
    def __init__(self, count: int):
        self.pipes = []
        self.processes = []
        for _ in range(count):
            ours, theirs = multiprocessing.Pipe()
            process = multiprocessing.Process(target=client_process, args=(theirs,), daemon=True)
            process.start()
            self.pipes.append(ours)
            self.processes.append(process)

    async def ask(self, commands: list[tuple]) -> list:
        for pipe, command in zip(self.pipes, commands, strict=True):
            pipe.send(command)
        return await asyncio.gather(*(asyncio.to_thread(pipe.recv) for pipe in self.pipes))

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.processes)


def cpu_seconds(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


async def open_target(
    name: str, server: Server, pairs: list, clients: "Clients", args: argparse.Namespace
) -> dict:
    """Opens --connections sockets to one target; the first --handshake-sample measured."""
    sample, rest = pairs[: args.handshake_sample], pairs[args.handshake_sample :]
    rss_before = server.rss_kib()
    # The measured handshakes open first, on a quiet server: later in a storm of
    # 10k, the sockets already open (their heartbeats, daphne's pings) bill their
    # idle cost to the phase, and on a loaded machine the phase lasts minutes.
    cpu_before, started = server.cpu_seconds(), time.monotonic()
    sampled = await clients.ask(
        [
            ("open", name, server.ws, sample[i :: args.clients], args.concurrency)
            for i in range(args.clients)
        ]
    )
    sample_seconds = time.monotonic() - started
    cpu_sample = server.cpu_seconds() - cpu_before
    sample_open = sum(o["open"] for o in sampled)
    started = time.monotonic()
    opened = await clients.ask(
        [
            ("open", name, server.ws, rest[i :: args.clients], args.concurrency)
            for i in range(args.clients)
        ]
    )
    storm = time.monotonic() - started + sample_seconds
    failures: dict[str, int] = {}
    for o in [*sampled, *opened]:
        for kind, n in o["failures"].items():
            failures[kind] = failures.get(kind, 0) + n
    return {
        "target": name,
        "connections_open": sum(o["open"] for o in opened),  # a running count
        "refused_or_failed": failures,
        "connect_seconds": round(storm, 1),
        "handshake_sample": sample_open,
        "handshake_sample_seconds": round(sample_seconds, 1),
        "handshake_cpu_ms": round(1000 * cpu_sample / max(sample_open, 1), 2),
        "rss_before_kib": rss_before,
    }


async def measure_idle(
    targets: dict, rows: dict, clients: "Clients", args: argparse.Namespace
) -> dict:
    """Every server's CPU over the same --hold seconds, and what the clients saw."""
    await asyncio.sleep(args.settle)
    pids = {name: server.pids()[0] for name, (server, _) in targets.items()}
    print(json.dumps({"hold_started": time.time(), "pids": pids}), flush=True)
    load_before = os.getloadavg()
    machine_before = machine_busy()
    cpu_before = {name: server.cpu_seconds() for name, (server, _) in targets.items()}
    clients_before = clients.cpu_seconds()
    started = time.monotonic()
    await asyncio.sleep(args.hold)
    held = time.monotonic() - started
    for name, (server, _) in targets.items():
        rows[name]["idle_cpu_percent"] = round(
            100 * (server.cpu_seconds() - cpu_before[name]) / held, 1
        )
        rss = server.rss_kib()
        rows[name]["rss_mib_after"] = round(rss / 1024)
        rows[name]["kib_per_connection"] = round(
            (rss - rows[name]["rss_before_kib"]) / max(rows[name]["connections_open"], 1), 1
        )
    machine = machine_busy_cores_since(machine_before)
    clients_cpu = 100 * (clients.cpu_seconds() - clients_before) / held
    for share in await clients.ask([("report",)] * args.clients):
        for name, seen in share.items():
            rows[name].setdefault("still_open", 0)
            rows[name]["still_open"] += seen["open"]
            codes = rows[name].setdefault("closed_by_code", {})
            for code in seen["closed"]:
                codes[str(code)] = codes.get(str(code), 0) + 1
    summary = {
        "hold_seconds": round(held, 1),
        "machine_busy_cores_during_hold": round(machine, 2),
        "load_average_before_hold": [round(v, 2) for v in load_before],
        "client_processes_cpu_percent": round(clients_cpu, 1),
    }
    for name in targets:
        if name != "bare":
            summary[f"{name}_handshake_ratio_over_bare"] = round(
                rows[name]["handshake_cpu_ms"] / max(rows["bare"]["handshake_cpu_ms"], 0.01),
                2,
            )
    return summary


async def main(args: argparse.Namespace) -> None:
    raise_open_files()
    store = prepare_store()
    users = [f"idle-{i}" for i in range(args.connections)]
    tokens = issue_tokens(store["store_id"], users)
    engine_env = dict(pair.split("=", 1) for pair in args.engine_env)
    base = args.port_base
    daphne = tuple(args.daphne_arg)
    targets = {
        "engine": (Server(base, daphne_args=daphne, **engine_env), tokens),
        "bare": (
            Server(
                base + 10,
                app="bare_app:application",
                cwd=ROOT / "bench",
                daphne_args=daphne,
                BARE_DB=DB,
            ),
            [""] * len(users),
        ),
    }
    if args.baseline_root:
        targets["engine-baseline"] = (
            Server(base + 2, cwd=Path(args.baseline_root), daphne_args=daphne, **engine_env),
            tokens,
        )
    clients = Clients(args.clients)
    rows: dict[str, dict] = {}
    try:
        for server, _ in targets.values():
            server.start()
        await asyncio.sleep(2)
        # Bare first: the engine's connect phase then runs with the bare app's sockets
        # already heartbeating, and the other way round would favour neither.
        order = ["bare", *[n for n in targets if n != "bare"]]
        for name in order:
            server, target_tokens = targets[name]
            pairs = list(zip(users, target_tokens, strict=True))
            rows[name] = await open_target(name, server, pairs, clients, args)
            print(json.dumps(rows[name]), flush=True)

        summary = await measure_idle(targets, rows, clients, args)
        for row in rows.values():
            print(json.dumps(row), flush=True)
        print(json.dumps(summary), flush=True)
        print(markdown(list(rows.values())))
    finally:
        with contextlib.suppress(TimeoutError, OSError, EOFError):
            await asyncio.wait_for(clients.ask([("close",)] * args.clients), 60)
        for process in clients.processes:
            process.join(5)
            if process.is_alive():
                process.terminate()
        for server, _ in targets.values():
            server.stop()


def markdown(rows: list[dict]) -> str:
    lines = [
        "| app | open / asked | refused | connect phase | handshake CPU | idle CPU (% of a core) "
        "| RSS after | per connection | closed during hold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['target']} | {r.get('still_open', 0):,} / {r['connections_open']:,} | "
            f"{sum(r['refused_or_failed'].values())} | {r['connect_seconds']} s | "
            f"{r['handshake_cpu_ms']} ms | {r['idle_cpu_percent']} % | "
            f"{r['rss_mib_after']} MiB | {r['kib_per_connection']} KiB | "
            f"{r.get('closed_by_code') or 0} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--concurrency", type=int, default=10, help="per client process")
    parser.add_argument(
        "--handshake-sample", type=int, default=1000, help="first handshakes measured"
    )
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--hold", type=float, default=60.0)
    parser.add_argument("--port-base", type=int, default=18480)
    parser.add_argument(
        "--baseline-root",
        default="",
        help="a checkout of the engine at another commit (git archive), a third target",
    )
    parser.add_argument(
        "--daphne-arg",
        action="append",
        default=[],
        help="an argument for every daphne, e.g. --daphne-arg=--websocket_connect_timeout=30 "
        "(the production value, config/services.py)",
    )
    parser.add_argument(
        "--engine-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the engine processes, e.g. WS_GC_FREEZE=0",
    )
    asyncio.run(main(parser.parse_args()))
