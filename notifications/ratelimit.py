"""Sends per second per channel and provider, shared by every worker through Redis.

A one-second fixed window (INCR + EXPIRE in one round trip): simple, and a provider's
own limit is per second too. Over the limit the send is refused as a transient
``TransportError`` with ``retry_after`` = the rest of the window, so the pipeline's
retry puts it in a later second instead of letting the provider answer 429.
If Redis cannot be reached the send goes ahead: the provider's own 429 is then the
limit, and a Redis outage must not stop delivery.
"""

import time
from functools import cache

import redis
import structlog
from django.conf import settings
from prometheus_client import Counter

from notifications.transports.base import TransportError

logger = structlog.get_logger(__name__)

RATE_LIMITED = Counter(
    "engine_notification_rate_limited_total",
    "Sends deferred by the shared per-provider rate limit",
    ["channel", "provider"],
)
RATE_LIMIT_UNAVAILABLE = Counter(
    "engine_notification_rate_limit_unavailable_total",
    "Sends let through because the rate limit store was unreachable",
    ["channel"],
)


@cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)


def acquire_send_slot(channel: str, provider: str) -> None:
    """Take one send from this second's budget, or raise a transient ``TransportError``."""
    limit = settings.NOTIFICATION_RATE_LIMITS.get(channel, 0)
    if not limit or settings.EMBEDDED:
        return
    now = time.time()
    window = int(now)
    key = f"ie:ratelimit:{channel}:{provider}:{window}"
    try:
        pipeline = _redis().pipeline()
        pipeline.incr(key)
        pipeline.expire(key, 2)
        count = int(pipeline.execute()[0])
    except redis.RedisError as error:
        RATE_LIMIT_UNAVAILABLE.labels(channel).inc()
        logger.warning("rate_limit_unavailable", channel=channel, error=str(error))
        return
    if count > limit:
        RATE_LIMITED.labels(channel, provider).inc()
        raise TransportError(
            f"{provider} {channel} limit of {limit}/s reached",
            retry_after=round(window + 1 - now, 3) + 0.01,
            reason="rate_limited",
        )
