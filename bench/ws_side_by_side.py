"""Issue 12's side-by-side run: the engine against a bare Channels app, same client,
same machine, alternating runs at each rate.

    .venv/bin/python bench/ws_side_by_side.py --rates 20,50,100 --duration 15 --users 1000

Two daphne processes stay up for the whole run: the engine (`config.asgi`, its
recommended layout for WebSocket triggers: one daphne; the inline send needs no Celery
worker) and `bench/bare_app.py` (POST → one INSERT → group_send → frame). --users
shoppers are connected to their user rooms on EACH of them. At each rate the bare app
and the engine take turns (bare first at odd rates, engine first at even ones), each run
firing `POST` triggers open loop (one every 1/rate s from a separate process, whatever
the server's pace). The engine's trigger is `POST /api/v1/interventions` with
`channel: websocket` and its API key; its clients ack every frame, as the storefront does.

`--layouts` picks the engine's process layouts beside the bare app: `daphne` (above) and
`split:N`, the Procfile's: HTTP on gunicorn with N uvicorn workers, shoppers on daphne.
Several `split:N` share one daphne and its shoppers (their own user ids), each with its
own HTTP server, so one worker and two take turns under the same load:

    .venv/bin/python bench/ws_side_by_side.py --layouts split:1,split:2 --rates 40,80,160

`--baseline-root` adds the engine at another commit (a `git archive` of it) in the
layout `--baseline-layout` names (`daphne` or `split:N`), with its own shoppers:

    .venv/bin/python bench/ws_side_by_side.py --layouts split:2 --baseline-root /tmp/main \
        --baseline-layout split:2

"Web" CPU then counts every engine process of the layout (daphne, the HTTP server's
master and workers); "path" adds their PostgreSQL backends, Redis and the client.
`BENCH_DB`, `BENCH_REDIS_URL` and `BENCH_PORT_OFFSET` keep two people's runs apart.

Per run: delivered % (frames received / triggers sent), trigger → frame p50/p95/p99,
web-process CPU per trigger (from /proc/<pid>/stat), and whole-machine CPU per trigger
(busy jiffies from /proc/stat over the run, minus the machine's busy rate measured for
3 s just before it, so the other tenants' steady load and the servers' idle cost drop
out; on a shared machine that subtraction is noise-dominated and can go negative), and
"path" CPU per trigger: the web process, its PostgreSQL backends, the Redis server and
the client's own processes, read from /proc per pid: every cost the trigger moves
elsewhere, without the other tenants (Redis is shared with them, a small error).
Bounded by (duration + ~15 s) per run.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import redis
import websockets
from ws_server import (
    DB,
    REDIS_URL,
    ROOT,
    HttpServer,
    Server,
    heartbeat,
    issue_tokens,
    percentile,
    prepare_store,
    process_cpu_seconds,
    raise_open_files,
)

TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / TICK


class Backing:
    """The PostgreSQL backends serving the bench database, and the Redis server.

    Its connection is opened once, before any load: a PostgreSQL at max_connections
    (other tenants, or the servers' pools at saturation) refuses new ones with "too many
    clients", which used to end the whole run between two rows. If the query fails anyway,
    the last list found stands in (backends that came since are not counted; the row says so).
    """

    def __init__(self) -> None:
        self.redis_pid = int(redis.Redis.from_url(REDIS_URL).info("server")["process_id"])
        self.connection: psycopg.Connection | None = None
        self.last: list[int] = []
        self.stale = False

    def pids(self) -> list[int]:
        try:
            if self.connection is None or self.connection.closed:
                self.connection = psycopg.connect(
                    "postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True
                )
            rows = self.connection.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", [DB]
            ).fetchall()
            self.last, self.stale = [row[0] for row in rows], False
        except psycopg.Error as error:
            print(f"backends not listed ({error}); counting the last list found", flush=True)
            self.connection, self.stale = None, True
        return [*self.last, self.redis_pid]


def cpu_seconds(pids: list[int]) -> float:
    return sum(process_cpu_seconds(pid) for pid in pids)


class RawClient:
    """POSTs written on keep-alive HTTP/1.1 sockets by hand: ~50 µs of CPU a request."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        authority, path = url.split("//", 1)[1].split("/", 1)
        self.host, self.port = authority.split(":")
        self.path = f"/{path}"
        self.lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes) -> int:
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"{self.lines}\r\n".encode()
            + body
        )
        status = int((await reader.readline()).split()[1])
        fields = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            fields[name.strip().lower()] = value.strip().lower()
        if fields.get("transfer-encoding") == "chunked":  # Twisted (the bare app's daphne)
            while size := int(await reader.readline(), 16):
                await reader.readexactly(size + 2)
            await reader.readline()
        else:
            await reader.readexactly(int(fields.get("content-length", 0)))
        close = fields.get("connection") == "close"
        if close:
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status

    def close(self) -> None:
        for _reader, writer in self.idle:
            writer.close()


def fire(url: str, headers: dict[str, str], users: list[str], rate: float, duration: float,
         start_at: float, results, client: str = "httpx") -> None:  # fmt: skip
    """Open loop: a POST every 1/rate s from t0, whatever the answers' pace.

    ``client``: ``httpx`` (what the tables before stop 17 used) or ``raw``, HTTP/1.1 written
    on keep-alive sockets by hand at ~50 µs of CPU a request: past ~100/s on a loaded
    machine httpx's own CPU queues the POSTs inside the generator, and the "answer" time
    then measures the client, not the server (stop 17).
    """

    async def run() -> None:
        sent: dict[str, tuple[float, float, int]] = {}
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        raw = RawClient(url, headers)

        async with httpx.AsyncClient(limits=limits, timeout=15) as http:

            async def post() -> None:
                bench_id = uuid.uuid4().hex
                body = {
                    "user_id": random.choice(users),
                    "channel": "websocket",
                    "personalization": {"title": "Bench", "body": "Latency", "bench_id": bench_id},
                }
                t_send = time.time()
                try:
                    if client == "raw":
                        status = await asyncio.wait_for(raw.post(json.dumps(body).encode()), 30)
                    else:
                        status = (await http.post(url, json=body, headers=headers)).status_code
                except (httpx.HTTPError, OSError, TimeoutError, ValueError, IndexError,
                        asyncio.IncompleteReadError):  # fmt: skip
                    status = 0
                sent[bench_id] = (t_send, time.time(), status)

            tasks = []
            while time.time() < start_at:
                await asyncio.sleep(0.001)
            t0 = time.monotonic()
            for index in range(int(rate * duration)):
                delay = t0 + index / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(post()))
            await asyncio.gather(*tasks)
        raw.close()
        results.put((sent, time.process_time()))

    asyncio.run(run())


class Target:
    """Shoppers connected to ``server`` (daphne); triggers POSTed to ``http`` (the same
    daphne, or the split layout's HTTP server); CPU counted over both."""

    def __init__(self, name: str, server: Server, trigger_path: str, headers: dict[str, str],
                 http: Server | None = None):  # fmt: skip
        self.name = name
        self.server = server
        self.http = http or server
        self.url = f"{self.http.url}{trigger_path}"
        self.headers = headers
        self.received: dict[str, float] = {}
        self.closed: list[int | None] = []  # close codes of sockets that ended early
        self.sockets: list = []
        self.readers: list = []
        self.users: list[str] = []

    def sharing_shoppers(self, name: str, http: Server) -> "Target":
        """Another target whose triggers go to ``http`` and reach these same shoppers:
        the split layout with 1 and 2 HTTP workers in one run, one daphne between them."""
        other = Target(name, self.server, self.url[len(self.http.url) :], self.headers, http)
        other.received, other.closed, other.users = self.received, self.closed, self.users
        return other

    def web_pids(self) -> list[int]:
        """Every engine process of the layout: daphne, and the HTTP server's master and
        workers when it is a separate server (listed again at each run: a worker may have
        been replaced)."""
        return self.server.pids() + (self.http.pids() if self.http is not self.server else [])

    async def connect(self, users: list[str], tokens: list[str], ack: bool) -> None:
        self.users[:] = users  # in place: targets sharing these shoppers see them too
        gate = asyncio.Semaphore(50)

        async def one(user: str, token: str) -> None:
            async with gate:
                query = f"?token={token}" if token else ""
                socket = await websockets.connect(
                    f"{self.server.ws}/ws/user/{user}/{query}", ping_interval=None, max_queue=None
                )
                config = json.loads(await socket.recv())
                self.sockets.append(socket)
                self.readers.append(asyncio.create_task(self.read(socket, ack)))
                # The bare app announces no interval: it gets the protocol's default, so
                # both servers receive the same client frames (it ignores them, like acks).
                seconds = float(config.get("payload", {}).get("heartbeat_seconds") or 25)
                self.readers.append(asyncio.create_task(heartbeat(socket, seconds)))

        await asyncio.gather(*(one(u, t) for u, t in zip(users, tokens, strict=True)))

    async def read(self, socket, ack: bool) -> None:
        try:
            async for text in socket:
                frame = json.loads(text)
                if frame["type"] != "intervention":
                    continue
                self.received[frame["payload"]["content"]["bench_id"]] = time.time()
                if ack:
                    await socket.send(
                        json.dumps({"type": "ack", "payload": {"messageId": frame["messageId"]}})
                    )
        except websockets.ConnectionClosed:
            pass
        # A socket the server closed receives nothing more: count it, or its shoppers'
        # frames look lost (an engine closes silent connections with 4408, for example).
        self.closed.append(socket.close_code)

    async def close(self) -> None:
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*(s.close() for s in self.sockets), return_exceptions=True)


class GeneratorStalled(Exception):
    """The load generator's POSTs are still unanswered a minute after the last was sent:
    past saturation; higher rates would only stall longer."""


async def one_run(target: Target, backing: Backing, rate: float, duration: float,
                  client: str = "httpx") -> dict:  # fmt: skip
    users = target.users
    target.received.clear()
    closed_before = len(target.closed)
    await asyncio.sleep(1)
    baseline_start, machine_start = time.monotonic(), machine_busy_seconds()
    await asyncio.sleep(3)
    background_rate = (machine_busy_seconds() - machine_start) / (time.monotonic() - baseline_start)

    web_pids, ws_pids = target.web_pids(), target.server.pids()
    pids = web_pids + backing.pids()
    ws_before = cpu_seconds(ws_pids)
    web_before, machine_before, t_before = (
        cpu_seconds(web_pids),
        machine_busy_seconds(),
        time.monotonic(),
    )
    path_before, client_before = cpu_seconds(pids), time.process_time()
    results: multiprocessing.Queue = multiprocessing.Queue()
    generator = multiprocessing.Process(
        target=fire,
        args=(target.url, target.headers, users, rate, duration, time.time() + 0.5, results,
              client),
    )  # fmt: skip
    generator.start()
    try:
        sent, generator_cpu = await asyncio.wait_for(asyncio.to_thread(results.get), duration + 60)
    except TimeoutError:
        generator.terminate()
        raise GeneratorStalled(
            f"{target.name} at {rate:g}/s: POSTs unanswered after 60 s"
        ) from None
    generator.join(10)
    accepted = {k: v for k, v in sent.items() if v[2] in (200, 201, 202)}
    # Stragglers: wait while frames still arrive (a saturated server drains its queue),
    # up to 30 s; a frame not in by then counts as not delivered.
    deadline, last_count, quiet_since = time.monotonic() + 30, -1, time.monotonic()
    while time.monotonic() < deadline and not all(k in target.received for k in accepted):
        if len(target.received) != last_count:
            last_count, quiet_since = len(target.received), time.monotonic()
        elif time.monotonic() - quiet_since > 3:
            break
        await asyncio.sleep(0.1)
    elapsed = time.monotonic() - t_before
    web_cpu = cpu_seconds(web_pids) - web_before
    ws_cpu = cpu_seconds(ws_pids) - ws_before
    machine_cpu = machine_busy_seconds() - machine_before - background_rate * elapsed
    # Web processes + their PostgreSQL backends + Redis + the client's own processes: every
    # CPU second the path costs, without the other tenants' noise (Redis is shared, though).
    path_cpu = cpu_seconds(pids) - path_before + time.process_time() - client_before + generator_cpu

    # How long the HTTP server took to answer: beside the frame's latency, it tells a
    # saturated HTTP server from a saturated daphne.
    answers = [1000 * (v[1] - v[0]) for v in accepted.values()]
    latencies = [
        1000 * (target.received[k] - v[0]) for k, v in accepted.items() if k in target.received
    ]
    statuses: dict[str, int] = {}
    for v in sent.values():
        statuses[str(v[2])] = statuses.get(str(v[2]), 0) + 1
    closed = target.closed[closed_before:]
    return {
        "target": target.name,
        "rate": rate,
        "posts": len(sent),
        "statuses": statuses,
        # Of all POSTs, shed ones included (the figure the tables have always shown) ...
        "delivered_percent": round(100 * len(latencies) / max(len(sent), 1), 1),
        # ... and of the POSTs answered 2xx: below 100 % means frames went missing.
        "delivered_of_accepted_percent": round(100 * len(latencies) / max(len(accepted), 1), 1),
        # Shoppers' sockets that ended before or during this run (not counted before:
        # their frames simply never came). Should be 0.
        "sockets_closed": len(target.closed),
        "sockets_closed_in_run": {str(c): closed.count(c) for c in set(closed)},
        "p50_ms": round(percentile(latencies, 0.50), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        # Per accepted trigger: a 503 (shed) or 500 costs little and delivers nothing.
        "web_cpu_ms_per_trigger": round(1000 * web_cpu / max(len(accepted), 1), 2),
        # Of which daphne's (all of it in the single-daphne layouts).
        "daphne_cpu_ms_per_trigger": round(1000 * ws_cpu / max(len(accepted), 1), 2),
        "answer_p50_ms": round(percentile(answers, 0.50), 1),
        "answer_p99_ms": round(percentile(answers, 0.99), 1),
        "path_cpu_ms_per_trigger": round(1000 * path_cpu / max(len(accepted), 1), 2),
        "machine_cpu_ms_per_trigger": round(1000 * machine_cpu / max(len(accepted), 1), 2),
        "machine_background_cores": round(background_rate, 2),
        # True when PostgreSQL refused the backend listing (see Backing).
        "backends_stale": backing.stale,
    }


def split_targets(workers: list[int], auth: dict[str, str], engine_env: dict[str, str],
                  baseline_root: str = "") -> list[Target]:  # fmt: skip
    """The Procfile's layout: shoppers on one daphne, triggers POSTed to the HTTP server.
    One HTTP server per worker count, all beside the same daphne and shoppers, so 1 worker
    and 2 take turns under the same load. With ``baseline_root``, each worker count also
    gets an HTTP server running that tree (``split-Nw-baseline``), beside the same daphne:
    the HTTP side before and after in one run."""
    ws = Server(18200, **engine_env).start()
    first = Target(f"split-{workers[0]}w", ws, "/api/v1/interventions", auth,
                   HttpServer(18210 + workers[0], workers[0], **engine_env).start())  # fmt: skip
    targets = [first] + [
        first.sharing_shoppers(f"split-{n}w", HttpServer(18210 + n, n, **engine_env).start())
        for n in workers[1:]
    ]
    if baseline_root:
        targets += [
            first.sharing_shoppers(
                f"split-{n}w-baseline",
                HttpServer(18220 + n, n, cwd=Path(baseline_root), **engine_env).start(),
            )
            for n in workers
        ]
    return targets


def baseline(args: argparse.Namespace, auth: dict[str, str], engine_env: dict[str, str]
             ) -> Target:  # fmt: skip
    """The engine at ``--baseline-root`` in ``--baseline-layout``."""
    root = Path(args.baseline_root)
    baseline_env = {**engine_env, "REDIS_URL": args.baseline_redis_url}
    if args.baseline_layout.startswith("split:"):
        # The Procfile's layout at that commit: its own daphne and HTTP server.
        workers = int(args.baseline_layout.split(":")[1])
        baseline_target = Target(
            f"baseline-split-{workers}w",
            Server(18202, cwd=root, **baseline_env).start(),
            "/api/v1/interventions",
            auth,
            HttpServer(18220 + workers, workers, cwd=root, **baseline_env).start(),
        )
    else:
        baseline_target = Target(
            "engine-baseline",
            Server(18182, cwd=root, **baseline_env).start(),
            "/api/v1/interventions",
            auth,
        )
    return baseline_target


async def main(args: argparse.Namespace) -> None:
    raise_open_files()
    store = prepare_store()
    users = [f"user-{i}" for i in range(args.users)]
    tokens = issue_tokens(store["store_id"], users)
    engine_env = dict(pair.split("=", 1) for pair in args.engine_env)
    auth = {"Authorization": f"Api-Key {store['api_key']}"}
    bare_server = Server(18191, app="bare_app:application", cwd=ROOT / "bench", BARE_DB=DB).start()
    bare = Target("bare", bare_server, "/trigger", {})
    targets = [bare]
    connections = [bare.connect(users, [""] * len(users), ack=True)]
    if "daphne" in args.layouts:
        # One daphne for HTTP and WebSocket (embedded mode's layout, and production's
        # until issue 12).
        engine = Target("engine", Server(18181, **engine_env).start(), "/api/v1/interventions",
                        auth)  # fmt: skip
        targets.append(engine)
        connections.append(engine.connect(users, tokens, ack=True))
    split_workers = [int(layout.split(":")[1]) for layout in args.layouts if ":" in layout]
    if split_workers:
        beside = args.baseline_root if args.baseline_layout == "beside" else ""
        split = split_targets(split_workers, auth, engine_env, beside)
        targets += split
        # Their own user ids: a trigger for user-1 would otherwise also reach user-1 on
        # the single-daphne engine.
        split_users = [f"split-{user}" for user in users]
        split_tokens = issue_tokens(store["store_id"], split_users)
        connections.append(split[0].connect(split_users, split_tokens, ack=True))
    if args.baseline_root and args.baseline_layout != "beside":
        # The engine at another commit (a `git archive` of it), same database: before and
        # after measured in one run, under the same neighbours' load. Its own shoppers
        # (user ids) and Redis database: Redis pub/sub ignores the database number, so
        # with the same user ids one engine's frames would reach (and be acked through)
        # the other's sockets.
        baseline_target = baseline(args, auth, engine_env)
        targets.append(baseline_target)
        baseline_users = [f"base-{user}" for user in users]
        baseline_tokens = issue_tokens(store["store_id"], baseline_users)
        connections.append(baseline_target.connect(baseline_users, baseline_tokens, ack=True))
    backing = Backing()
    rows = []
    try:
        for connection in connections:
            await connection
        for index, rate in enumerate(args.rates):
            order = targets if index % 2 == 0 else targets[::-1]
            pair = {}
            try:
                for target in order:
                    row = await one_run(target, backing, rate, args.duration, args.client)
                    print(json.dumps(row), flush=True)
                    pair[target.name] = row
                    rows.append(row)
            except GeneratorStalled as stalled:
                print(f"stopping: {stalled}", flush=True)
                break
            for name in [t.name for t in targets if t is not bare]:
                print(
                    json.dumps(
                        {
                            "rate": rate,
                            "engine": name,
                            **{
                                f"{measure}_ratio_over_bare": round(
                                    pair[name][f"{measure}_ms_per_trigger"]
                                    / max(pair["bare"][f"{measure}_ms_per_trigger"], 0.01),
                                    2,
                                )
                                for measure in ("web_cpu", "path_cpu", "machine_cpu")
                            },
                        }
                    ),
                    flush=True,
                )
        print(markdown(rows))
    finally:
        for target in targets:
            await target.close()
            target.server.stop()
            target.http.stop()


def markdown(rows: list[dict]) -> str:
    lines = [
        "| rate | app | statuses | delivered (of accepted) | sockets closed "
        "| p50 / p95 / p99 ms | answer p50 / p99 ms | web CPU ms/trigger "
        "| path CPU ms/trigger | machine CPU ms/trigger (net) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rate']:g}/s | {r['target']} | "
            + ", ".join(f"{n} × {status}" for status, n in sorted(r["statuses"].items()))  # noqa: RUF001
            + f" | {r['delivered_percent']} % "
            f"({r['delivered_of_accepted_percent']} %) | {r['sockets_closed']} | "
            f"{r['p50_ms']} / {r['p95_ms']} / {r['p99_ms']} | "
            f"{r['answer_p50_ms']} / {r['answer_p99_ms']} | {r['web_cpu_ms_per_trigger']} | "
            f"{r['path_cpu_ms_per_trigger']} | {r['machine_cpu_ms_per_trigger']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    # `kill` ends the run through main()'s finally, which stops every server it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rates", type=lambda s: [float(v) for v in s.split(",")], default=[20.0, 50.0, 100.0]
    )
    parser.add_argument("--duration", type=float, default=15)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument(
        "--baseline-root",
        default="",
        help="a checkout of the engine at another commit, run as a third target",
    )
    parser.add_argument("--baseline-redis-url", default="redis://127.0.0.1:6379/13")
    parser.add_argument(
        "--baseline-layout",
        default="daphne",
        help="the baseline engine's layout: `daphne` or `split:N` (its own daphne and "
        "an HTTP server with N workers, as --layouts), or `beside`: an HTTP server of the "
        "baseline tree per split layout, publishing to the engine's daphne",
    )
    parser.add_argument(
        "--client",
        choices=["httpx", "raw"],
        default="httpx",
        help="the load generator's HTTP client (see fire())",
    )
    parser.add_argument(
        "--layouts",
        type=lambda s: s.split(","),
        default=["daphne"],
        help="engine layouts beside the bare app: `daphne` (one daphne for HTTP and "
        "WebSocket) and/or `split:N` (HTTP on gunicorn with N workers, shoppers on daphne; "
        "several split:N share one daphne), e.g. --layouts split:1,split:2",
    )
    parser.add_argument(
        "--engine-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the engine's process, e.g. API_KEY_CACHE_SECONDS=0 (a lever off)",
    )
    asyncio.run(main(parser.parse_args()))
