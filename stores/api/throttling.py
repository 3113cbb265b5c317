"""Request rates: per API key once authenticated, per client address before that.

Counters live in the Redis cache, shared by every web process: one fixed window per caller
and period, counted with an atomic INCR. That is one or two round trips a request, where
DRF's SimpleRateThrottle rewrites the list of every request's timestamp in the window
(6,000 floats for a key at 100/s). A fixed window lets a caller burst up to twice the rate
across a window boundary; the limits are about runaway clients, not exact quotas.
"""

import math
import time
from functools import cache
from typing import Any

import structlog
from django.conf import settings
from django.core.cache import cache as shared_cache
from django.core.exceptions import ImproperlyConfigured
from redis.exceptions import RedisError
from rest_framework import throttling
from rest_framework.request import Request

logger = structlog.get_logger(__name__)

PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@cache
def parse_rate(rate: str) -> tuple[int, int] | None:
    """'100/s', '6000/min', '10/hour' → (requests, seconds); '' or '0' → no limit."""
    if rate.strip() in ("", "0"):
        return None
    count, _, period = rate.partition("/")
    try:
        requests, seconds = int(count), PERIOD_SECONDS[period.strip()[:1]]
    except (ValueError, KeyError):
        raise ImproperlyConfigured(
            f"Rate {rate!r} is not '<requests>/<s|min|hour|day>', e.g. '6000/min'."
        ) from None
    return requests, seconds


class FixedWindowThrottle(throttling.BaseThrottle):
    scope = ""

    def __init__(self) -> None:
        self.retry_after = 0

    def identify(self, request: Request) -> str | None:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        limit = parse_rate(settings.API_THROTTLE_RATES.get(self.scope, ""))
        caller = self.identify(request)
        if limit is None or caller is None:
            return True
        requests, seconds = limit
        now = time.time()
        window = int(now // seconds)
        key = f"throttle:{self.scope}:{caller}:{window}"
        try:
            count = count_in_window(key, seconds)
        except RedisError as exc:
            # Redis down must not take the API down with it (docs/operations.md: the API
            # keeps accepting and the sweeper catches up): unthrottled until it returns.
            logger.warning("throttle_unavailable", scope=self.scope, error=str(exc))
            return True
        self.retry_after = math.ceil((window + 1) * seconds - now)
        return count <= requests

    def wait(self) -> float:
        return max(self.retry_after, 1)


def count_in_window(key: str, seconds: int) -> int:
    # The key outlives its window by a second so a late INCR never recreates it unbounded.
    if shared_cache.add(key, 1, timeout=seconds + 1):
        return 1
    try:
        return int(shared_cache.incr(key))
    except ValueError:  # expired between add and incr: a new window has begun
        shared_cache.add(key, 1, timeout=seconds + 1)
        return 1


class ApiKeyThrottle(FixedWindowThrottle):
    """Every request made with one API key, whichever process serves it."""

    scope = "api_key"

    def identify(self, request: Request) -> str | None:
        api_key = getattr(request.user, "api_key", None)
        return None if api_key is None else str(api_key.prefix)


class UnauthenticatedThrottle(FixedWindowThrottle):
    """Requests without a valid key, per client address (NUM_PROXIES says which one)."""

    scope = "unauthenticated"

    def identify(self, request: Request) -> str | None:
        return str(self.get_ident(request))
