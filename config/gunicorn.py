"""gunicorn's settings for the HTTP server: the Procfile's and compose's ``web``.

    gunicorn -c python:config.gunicorn -b 127.0.0.1:8000 config.asgi:application

The HTTP API runs here, in ``WEB_CONCURRENCY`` worker processes that share one listening
socket; WebSocket stays on daphne (``ws``), as the Channels docs lay out production
(docs/operations.md#process-layout). Each worker is uvicorn running the same ASGI
application daphne runs, so ``config.handlers`` (one thread per request, load shedding
past ``MAX_IN_FLIGHT_REQUESTS``, requests of departed clients never run) holds per
worker unchanged; docs/architecture.md#http-and-websocket-servers says why not WSGI.
"""

import os
import shutil
import tempfile
from typing import Any

from uvicorn_worker import UvicornWorker


class HttpWorker(UvicornWorker):
    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,  # uvloop and httptools: C event loop and parser
        # Channels' ProtocolTypeRouter has no lifespan handler; "auto" logs a warning at
        # every start instead.
        "lifespan": "off",
        # django-structlog already logs each request once; a second access line per
        # request costs CPU on the hot path and says nothing new.
        "access_log": False,
        # The client address stays the peer's, as under daphne: NUM_PROXIES decides
        # whether X-Forwarded-For counts (API throttles, admin lockout).
        "proxy_headers": False,
        "server_header": False,
    }


worker_class = "config.gunicorn.HttpWorker"
# Not preloaded: each worker opens its own database pool and Redis clients after the fork
# (pool threads and sockets do not survive one).
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Idle keep-alive a client (a store's backend, a load balancer) may reuse; load balancers
# close theirs first at 60 s or less, so 75 s never cuts one mid-request.
keepalive = 75
# A worker that has not reported for this long is stuck: gunicorn replaces it.
timeout = 60
graceful_timeout = 30
# gunicorn 25+ opens a control socket at one path per user ($HOME/.gunicorn/gunicorn.ctl):
# a second server on the machine (another worker count, tests, a benchmark) takes it over
# from the first. Nothing here uses gunicornc; signals (HUP, TTIN/TTOU) still work.
control_socket_disable = True


# Metrics of every worker in one scrape: prometheus_client's multiprocess mode. Each worker
# writes its counters to files in this directory and /metrics sums them
# (config.observability.metrics). A fresh directory at each server start (files left by an
# earlier run would be counted again), set before any worker imports prometheus_client: the
# mode is chosen at its import. docs/operations.md#metrics
METRICS_DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"


def on_starting(server: Any) -> None:
    os.environ[METRICS_DIRECTORY] = tempfile.mkdtemp(prefix="engine-metrics-")


def child_exit(server: Any, worker: Any) -> None:
    # Imported here, in the master, only once workers exist: an import before
    # on_starting would fix the single-process mode for every worker forked afterwards.
    from prometheus_client import multiprocess  # noqa: PLC0415

    # A dead worker's counters stay (totals never go down); its live gauges go.
    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    shutil.rmtree(os.environ[METRICS_DIRECTORY], ignore_errors=True)
