"""Request ids, health checks and the Prometheus endpoint."""

import os
from collections.abc import Callable

import redis
import structlog
from celery import current_app
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django_structlog.middlewares import RequestMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from interventions.metrics import PIPELINE_GAUGES

logger = structlog.get_logger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"


def client_address(request: HttpRequest) -> str:
    """The caller's address as the admin lockout reads it: the peer's, or with
    ``NUM_PROXIES`` trusted proxies in front, the one they saw (X-Forwarded-For counted
    from the right: entries further left are the caller's own claims)."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if settings.NUM_PROXIES and forwarded:
        hops = [hop.strip() for hop in forwarded.split(",")]
        return hops[-min(settings.NUM_PROXIES, len(hops))]
    return str(request.META.get("REMOTE_ADDR", ""))


class RequestLogMiddleware(RequestMiddleware):
    """django-structlog's request logging, with the ``ip`` of every request's log lines
    read by ``client_address``. django-structlog asks ipware, which scans a dozen headers
    and takes the first public address a client put in X-Forwarded-For, whatever
    NUM_PROXIES says (a forged address in the logs), for ~80 µs a request (issue 12)."""

    @classmethod
    def bind_ip(cls, request: HttpRequest) -> None:
        structlog.contextvars.bind_contextvars(ip=client_address(request))


class RequestIdHeaderMiddleware:
    """Return the request id django-structlog bound for this request, so a caller
    can quote it when reporting a problem."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if request_id:
            response[REQUEST_ID_HEADER] = request_id
        return response


def liveness(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def _check_redis() -> None:
    if settings.EMBEDDED:
        return
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()


def _check_broker() -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return
    with current_app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=1, timeout=2)


READINESS_CHECKS: dict[str, Callable[[], None]] = {
    "postgres" if not settings.EMBEDDED else "database": _check_database,
    "redis": _check_redis,
    "celery_broker": _check_broker,
}


def readiness(request: HttpRequest) -> HttpResponse:
    results: dict[str, str] = {}
    failing: list[str] = []
    for name, check in READINESS_CHECKS.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("readiness_check_failed", dependency=name, error=str(exc))
            results[name] = f"error: {exc}"
            failing.append(name)
    if failing:
        body = {
            "status": "unavailable",
            "checks": results,
            "error": {
                "code": "dependency_unavailable",
                "message": f"Not ready: {', '.join(failing)} unreachable.",
                "fields": {name: [results[name]] for name in failing},
            },
        }
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "ok", "checks": results})


def metrics(request: HttpRequest) -> HttpResponse:
    """/metrics for Prometheus. Under gunicorn (``PROMETHEUS_MULTIPROC_DIR``, set by
    config/gunicorn.py) each worker writes its counters to files and a scrape, whichever
    worker takes it, sums them all; the pipeline's gauges are read once, from PostgreSQL
    and Redis. daphne and the Celery workers are single processes: their own registry."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        registry.register(PIPELINE_GAUGES)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
