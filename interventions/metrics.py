"""The pipeline's Prometheus metrics (exposed on /metrics).

Counters and histograms count in the process that does the work (under gunicorn, summed
over its workers at each scrape: docs/operations.md#metrics); the gauges of
``PipelineCollector`` are read from PostgreSQL and Redis at scrape time, so the web
process reports the whole system's state whichever process changed it.
"""

from collections.abc import Iterator
from datetime import timedelta

import redis
from celery import current_app
from django.conf import settings
from django.db.models import Count, F, Value
from django.db.models.functions import Left, StrIndex
from django.utils import timezone
from prometheus_client import Counter, Histogram
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

from interventions.models import DeliveryAttempt, Intervention

DECISION_SECONDS = Histogram(
    "engine_decision_seconds",
    "Time to gather facts and decide one intervention",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
SEND_SECONDS = Histogram("engine_send_seconds", "Time spent in a transport's send()", ["channel"])
INTERVENTIONS_DECIDED = Counter(
    "engine_interventions_decided_total",
    "Interventions created, by first status",
    ["status", "channel"],
)
EVENTS_ACCEPTED = Counter("engine_events_accepted_total", "Cart events accepted", ["type"])
IDEMPOTENT_REPLAYS = Counter(
    "engine_idempotent_replays_total", "Triggers answered from an earlier Idempotency-Key"
)
DELIVERY_ATTEMPTS = Counter(
    "engine_delivery_attempts_total", "Transport sends by outcome", ["channel", "outcome"]
)
DELIVERY_FAILURES = Counter(
    "engine_delivery_failures_total", "Failed sends by reason", ["channel", "reason"]
)
DELIVERED = Counter("engine_delivered_total", "Interventions confirmed delivered", ["channel"])
FALLBACKS = Counter(
    "engine_fallbacks_total", "Interventions moved to a fallback channel", ["to_channel"]
)
ENQUEUE_FAILURES = Counter(
    "engine_enqueue_failures_total", "Celery publishes that failed (the sweeper retries)", ["queue"]
)
SWEPT = Counter("engine_swept_total", "Interventions recovered by the sweeper", ["kind"])


class PipelineCollector(Collector):
    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Lets the registry learn the names without querying at import time.
        yield GaugeMetricFamily("engine_interventions", "", labels=["status", "channel"])
        yield GaugeMetricFamily("engine_queue_depth", "", labels=["queue"])
        yield GaugeMetricFamily(
            "engine_delivery_attempts_recent", "", labels=["channel", "outcome", "reason"]
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_status = GaugeMetricFamily(
            "engine_interventions",
            "Interventions updated in the last 24 hours, by current status and channel",
            labels=["status", "channel"],
        )
        try:
            rows = (
                Intervention.objects.filter(updated_at__gte=timezone.now() - timedelta(days=1))
                .values("status", "channel")
                .annotate(n=Count("id"))
                .order_by()
            )
            for row in rows:
                by_status.add_metric([row["status"], row["channel"] or "none"], row["n"])
        except Exception:  # noqa: S110 - a scrape must not fail because the database is down
            pass
        yield by_status
        yield self._attempts()

        depth = GaugeMetricFamily(
            "engine_queue_depth", "Tasks waiting in each Celery queue", labels=["queue"]
        )
        if not settings.CELERY_TASK_ALWAYS_EAGER:
            try:
                queues = [queue.name for queue in current_app.conf.task_queues or ()]
                client = redis.Redis.from_url(
                    settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1
                )
                with client.pipeline() as pipe:
                    for queue in queues:
                        pipe.llen(queue)
                    lengths = pipe.execute()
                client.close()
                for queue, length in zip(queues, lengths, strict=True):
                    depth.add_metric([queue], length)
            except Exception:  # noqa: S110 - same: report what can be read
                pass
        yield depth

    def _attempts(self) -> GaugeMetricFamily:
        """Delivery attempts by outcome and failure reason, whichever worker made them:
        worker processes' own counters are not on this endpoint."""
        family = GaugeMetricFamily(
            "engine_delivery_attempts_recent",
            "Delivery attempts started in the last 24 hours, by channel, outcome and failure reason",
            labels=["channel", "outcome", "reason"],
        )
        try:
            rows = (
                DeliveryAttempt.objects.filter(started_at__gte=timezone.now() - timedelta(days=1))
                .annotate(colon=StrIndex(F("error"), Value(":")))
                .annotate(reason=Left(F("error"), F("colon") - 1))
                .values("channel", "outcome", "reason")
                .annotate(n=Count("id"))
                .order_by()
            )
            for row in rows:
                family.add_metric([row["channel"], row["outcome"], row["reason"] or ""], row["n"])
        except Exception:  # noqa: S110 - a scrape must not fail because the database is down
            pass
        return family


# Also exported on its own: under gunicorn /metrics sums the workers' files
# (config.observability.metrics) and adds these gauges once.
PIPELINE_GAUGES = PipelineCollector()
REGISTRY.register(PIPELINE_GAUGES)

PROVIDER_EVENTS = Counter(
    "engine_provider_events_total",
    "Delivery reports received from providers",
    ["channel", "kind", "matched"],
)
