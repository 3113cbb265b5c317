"""Find out which backing services are reachable, for `make run` and `make test`.

python -m config.services require   # exit 1 naming what is missing (make test)
python -m config.services run       # prepare and start the whole product (make run)
"""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/intervention_engine"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"

HOW_TO_START = {
    "PostgreSQL": "start it with `pg_ctlcluster <version> main start` (or `docker compose up -d postgres`), "
    "or point DATABASE_URL at one",
    "Redis": "start it with `redis-server --daemonize yes` (or `docker compose up -d redis`), "
    "or point REDIS_URL at one",
}

ASGI_APP = "config.asgi:application"
# daphne's command line drops a WebSocket handshake the app has not accepted within 5 s,
# with no HTTP answer (clients see InvalidMessage). A connect storm interleaves every
# handshake, so past ~5 s of handshake capacity (~1,000 at once on this machine class)
# they all finish late and all fail: 3,000 at once, 0 admitted; with 30 s, 3,000 of
# 3,000 in 16 s (docs/benchmarks.md). The Procfile, Dockerfile and compose file agree.
DAPHNE_TIMEOUTS = ("--websocket_connect_timeout", "30")


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=1
        ):
            return True
    except OSError:
        return False


def missing_services() -> list[str]:
    missing = []
    if not _reachable(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), 5432):
        missing.append("PostgreSQL")
    if not _reachable(os.environ.get("REDIS_URL", DEFAULT_REDIS_URL), 6379):
        missing.append("Redis")
    return missing


def ensure_database(url: str) -> None:
    """Create the database named in the URL if the server does not have it yet."""
    import psycopg
    from psycopg import sql

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin_url = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def require() -> int:
    missing = missing_services()
    if missing:
        print(
            "The test suite runs against real services, and these are not reachable:",
            file=sys.stderr,
        )
        for name in missing:
            print(f"  - {name}: {HOW_TO_START[name]}", file=sys.stderr)
        return 1
    ensure_database(os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))
    return 0


def _manage(*args: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "manage.py"), *args],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return result.stdout


def run() -> int:
    import json

    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("LOG_FORMAT", "console")
    env.setdefault("DEMO_STOREFRONT_ENABLED", "1")
    port = env.setdefault("WEB_PORT", "8000")
    ws_port = env.setdefault("WS_PORT", str(int(port) + 1))
    explicit = "DATABASE_URL" in env or "REDIS_URL" in env
    missing = missing_services()
    embedded = bool(missing) and not explicit
    if missing and explicit:
        print(f"Configured services unreachable: {', '.join(missing)}.", file=sys.stderr)
        return 1
    if embedded:
        env["ENGINE_EMBEDDED"] = "1"
        print(
            f"!! {' and '.join(missing)} not reachable: running EMBEDDED in one process "
            "(SQLite in var/, in-memory channel layer, tasks run in-process). "
            "Fine for a look around; not for production."
        )
    else:
        ensure_database(env.get("DATABASE_URL", DEFAULT_DATABASE_URL))

    (BASE_DIR / "var").mkdir(exist_ok=True)
    _manage("migrate", "--no-input", env=env)
    _manage("collectstatic", "--no-input", env=env)
    demo = json.loads(_manage("seed_demo", env=env).strip().splitlines()[-1])
    base = f"http://127.0.0.1:{port}"
    if embedded:
        # One daphne serves both: an in-memory channel layer cannot cross processes.
        where = f"  HTTP and WebSocket: {base}  (one daphne process)"
    else:
        # Pages served from the HTTP server open their sockets on daphne's port; behind
        # one proxy routing /ws/ to daphne this stays empty (docs/operations.md).
        env.setdefault("PUBLIC_WS_URL", f"ws://127.0.0.1:{ws_port}")
        where = (
            f"  HTTP:           {base}  (gunicorn, WEB_CONCURRENCY={env.get('WEB_CONCURRENCY', '2')} worker processes)\n"
            f"  WebSocket:      ws://127.0.0.1:{ws_port}/ws/…  (daphne)"
        )
    print(
        "\n".join(
            [
                "",
                where,
                f"  Admin:          {base}/admin/  (user {demo['admin_user']}, password {demo['admin_password']}; opens on the dashboard)",
                f"                  one store only: user {demo['marketer_user']}, password {demo['marketer_password']}",
                f"  API docs:       {base}/api/docs/",
                f"  Demo storefront {base}/demo/storefront/",
                f"  Health:         {base}/health/ready   Metrics: {base}/metrics"
                + ("" if embedded else f"   daphne's: http://127.0.0.1:{ws_port}/health/ready"),
                f"  Demo store id:  {demo['store_id']}",
                f"  Demo API key:   {demo['api_key']}",
                "",
                f"  curl -H 'Authorization: Api-Key {demo['api_key']}' {base}/api/v1/stores",
                "",
            ]
        ),
        flush=True,
    )
    bin_dir = Path(sys.executable).parent
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    if embedded:
        daphne = shutil.which("daphne", path=env["PATH"]) or "daphne"
        os.execvpe(daphne, [daphne, "-b", "127.0.0.1", "-p", port, *DAPHNE_TIMEOUTS, ASGI_APP], env)
    honcho = shutil.which("honcho", path=env["PATH"]) or "honcho"
    os.execvpe(honcho, [honcho, "-f", str(BASE_DIR / "Procfile"), "start"], env)


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "require":
        sys.exit(require())
    if command == "run":
        sys.exit(run())
    print(__doc__, file=sys.stderr)
    sys.exit(2)
