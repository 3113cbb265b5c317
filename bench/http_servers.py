"""Which HTTP server for the API: gunicorn's gthread WSGI workers or its uvicorn workers
(what the Procfile runs), one worker process each, same database, alternating runs.

    .venv/bin/python bench/http_servers.py --rate 30 --requests 300

Fires WebSocket-channel triggers (`POST /api/v1/interventions`, no shopper connected, so
the publish reaches no one) open loop at --rate, and reports each server's CPU per
request (master and worker, from /proc) and the answer's p50/p99. The WSGI side runs
Django's own WSGI handler (`django.core.wsgi:get_wsgi_application()`), 8 threads.
"""

import argparse
import asyncio
import json
import time

import httpx
from ws_server import BIN, HttpServer, percentile, prepare_store


class GthreadServer(HttpServer):
    def name(self) -> str:
        return "gthread"

    def command(self) -> list[str]:
        return [str(BIN / "gunicorn"), "-k", "gthread", "--threads", "8", "-w", "1",
                "--keep-alive", "75", "--no-control-socket", "-b", f"127.0.0.1:{self.port}",
                "django.core.wsgi:get_wsgi_application()"]  # fmt: skip


async def fire(url: str, headers: dict[str, str], rate: float, count: int) -> tuple[list, dict]:
    answers: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100), timeout=30) as client:

        async def post(index: int) -> None:
            body = {"user_id": f"shopper-{index % 500}", "channel": "websocket",
                    "personalization": {"title": "Bench", "body": "HTTP server"}}  # fmt: skip
            started = time.monotonic()
            try:
                status = (await client.post(url, json=body, headers=headers)).status_code
            except httpx.HTTPError:
                status = 0
            answers.append(1000 * (time.monotonic() - started))
            statuses[status] = statuses.get(status, 0) + 1

        t0, posts = time.monotonic(), []
        for index in range(count):
            delay = t0 + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(index)))
        await asyncio.gather(*posts)
    return answers, statuses


def main(args: argparse.Namespace) -> None:
    store = prepare_store()
    env = {"DATABASE_POOL_MAX_SIZE": "10"}
    servers = [HttpServer(18411, 1, **env).start(), GthreadServer(18412, 1, **env).start()]
    headers = {"Authorization": f"Api-Key {store['api_key']}"}
    try:
        for server in servers:  # first requests compile URL patterns, serializers, templates
            asyncio.run(fire(f"{server.url}/api/v1/interventions", headers, 20, 40))
        for round_ in range(args.rounds):
            for server in servers if round_ % 2 == 0 else servers[::-1]:
                before = server.cpu_seconds()
                answers, statuses = asyncio.run(
                    fire(f"{server.url}/api/v1/interventions", headers, args.rate, args.requests)
                )
                accepted = sum(n for status, n in statuses.items() if 200 <= status < 300)
                cpu = server.cpu_seconds() - before
                row = {
                    "server": "uvicorn" if type(server) is HttpServer else "gthread",
                    "rate": args.rate,
                    "statuses": statuses,
                    "cpu_ms_per_request": round(1000 * cpu / max(accepted, 1), 2),
                    "answer_p50_ms": round(percentile(answers, 0.50), 1),
                    "answer_p99_ms": round(percentile(answers, 0.99), 1),
                }
                print(json.dumps(row), flush=True)
    finally:
        for server in servers:
            server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=30)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    main(parser.parse_args())
