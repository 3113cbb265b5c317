"""Analytics at volume: endpoint latency, rollup recount time and lag, /track ingest rate.

Runs in-process against a database seeded by ``manage.py seed_analytics_bench`` (the
requests go through Django's full stack: middleware, API-key auth, DRF, serializers; no
ASGI server or network). The biggest "Bench" store (70 % of the rows) is the one read.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ie_rollups_bench \\
        .venv/bin/python bench/analytics_latency.py --backfill --raw --lag 60 --track 2000

Reports: row counts; backfill time (--backfill); p50/p95/max latency per endpoint over
30 and 90 days; the same 30-day performance figures computed from the raw rows the way
the endpoint did before rollups (--raw); EXPLAIN of the rollup read and of the recent
recount; the recount of the recent days with events arriving at --rate per second, and
the resulting lag from an event's commit to the figures (--lag SECONDS of run);
POST /track requests per second over --track requests from --threads threads.
"""

import argparse
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("ALLOW_DEV_SECRET_KEY", "1")

import django  # noqa: E402

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.db import close_old_connections, connection  # noqa: E402
from django.db.models import Count, Exists, OuterRef, Q  # noqa: E402
from django.db.models.functions import Trunc  # noqa: E402
from django.test import Client  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from campaigns.models import Campaign  # noqa: E402
from interventions.models import Intervention  # noqa: E402
from stores.actions import do_issue_api_key  # noqa: E402
from stores.models import Store  # noqa: E402
from tracking.actions import do_record_tracking_event  # noqa: E402
from tracking.links import open_pixel_url  # noqa: E402
from tracking.models import Conversion, DailyRollup, TrackingEvent  # noqa: E402
from tracking.rollups import do_backfill_rollups, do_refresh_recent_rollups  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def client_for(store: Store) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {do_issue_api_key(store, 'bench')}")
    return client


def counts() -> None:
    with connection.cursor() as cursor:
        for table in ("interventions_intervention", "tracking_trackingevent", "tracking_conversion",
                      "tracking_dailyrollup", "tracking_revenuerollup"):  # fmt: skip
            cursor.execute(f"SELECT count(*) FROM {table}")
            print(f"{table:32} {cursor.fetchone()[0]:>12,}")


def backfill() -> None:
    oldest = Intervention.objects.order_by("created_at").values_list("created_at", flat=True)[0]
    started = time.monotonic()
    rows = sum(
        written
        for *_, written in do_backfill_rollups(
            oldest.date() - timezone.timedelta(days=1), timezone.now().date()
        )
    )
    print(f"backfill: {rows:,} rollup rows in {time.monotonic() - started:.1f} s")


def timed(label: str, repeat: int, request: Callable[[], Any]) -> None:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = request()
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.content[:300]
    print(f"{label:64} p50 {statistics.median(times):7.1f} ms  p95 {percentile(times, 0.95):7.1f} ms"
          f"  max {max(times):7.1f} ms")  # fmt: skip


def latency(client: APIClient, store: Store, repeat: int) -> None:
    today = timezone.now().date()
    # The busiest campaign (the email reminder with its A/B test) and channel.
    campaign = Campaign.objects.filter(store=store).order_by("pk").values_list("pk", flat=True)[0]
    for days in (30, 90):
        since = (today - timezone.timedelta(days=days - 1)).isoformat()
        for path in ("performance", "performance?interval=week", "channels", "conversion",
                     "performance?format=csv", f"performance?campaign={campaign}",
                     f"performance?interval=week&campaign={campaign}&variant=B",
                     "performance?channel=email", f"channels?campaign={campaign}",
                     f"conversion?campaign={campaign}&channel=email"):  # fmt: skip
            base, _, extra = path.partition("?")
            url = f"/api/v1/analytics/{base}?since={since}&until={today}" + (
                f"&{extra}" if extra else ""
            )
            timed(f"{days:>3} days {path}", repeat, lambda url=url: client.get(url))


def admin_dashboard(store: Store, repeat: int) -> None:
    """The admin's landing page: every chart's figures for the store, rendered."""
    user = get_user_model().objects.filter(username="bench-admin").first()
    if user is None:
        user = get_user_model().objects.create_superuser("bench-admin", "bench@example.test", None)
    browser = Client()
    browser.force_login(user)
    for days in (30, 90):
        url = f"/admin/?store={store.pk}&days={days}"
        timed(f"{days:>3} days admin dashboard page", repeat, lambda url=url: browser.get(url))


def recounts(repeat: int) -> None:
    """What beat runs, alone: the per-minute pass (2 days) and the 10-minute one (4)."""
    for days in (2, 4):
        durations = []
        for _ in range(repeat):
            started = time.monotonic()
            do_refresh_recent_rollups(days)
            durations.append(time.monotonic() - started)
        print(f"recount of the last {days} days, alone: p50 {statistics.median(durations):.2f} s"
              f"  max {max(durations):.2f} s ({repeat} runs)")  # fmt: skip


def raw_performance(store: Store) -> None:
    """The pre-rollup query (tracking/analytics.py before this change), 30 days by day."""
    since = timezone.now() - timezone.timedelta(days=30)

    def reported(kind: str) -> Exists:
        return Exists(
            TrackingEvent.objects.filter(intervention=OuterRef("pk"), kind=kind, duplicate=False)
        )

    started = time.perf_counter()
    rows = (
        Intervention.objects.filter(store=store, sent_at__gte=since)
        .annotate(period=Trunc("sent_at", "day"))
        .alias(was_opened=reported("opened"), was_clicked=reported("clicked"))
        .values("period")
        .annotate(
            sent=Count("pk"),
            delivered=Count("pk", filter=Q(delivered_at__isnull=False)),
            opened=Count("pk", filter=Q(was_opened=True)),
            clicked=Count("pk", filter=Q(was_clicked=True)),
        )
        .order_by("period")
    )
    list(rows)
    orders = Conversion.objects.filter(
        intervention__in=Intervention.objects.filter(store=store, sent_at__gte=since).values("pk")
    )
    list(orders.values("currency").annotate(n=Count("pk")).order_by())
    print(f"raw rows, 30 days performance (before rollups): {time.perf_counter() - started:.2f} s")


def explain(store: Store) -> None:
    today = timezone.now().date()
    read = DailyRollup.objects.filter(
        store=store, cohort="sent", day__gte=today - timezone.timedelta(days=89)
    ).values("day")
    print("EXPLAIN rollup read (90 days):")
    print(read.annotate(n=Count("pk")).explain(analyze=True))
    recent = Intervention.objects.filter(
        store=store, sent_at__gte=timezone.now() - timezone.timedelta(days=4)
    )
    print("EXPLAIN recount's scan of the recent sends (4 days):")
    print(recent.values("channel").annotate(n=Count("pk")).explain(analyze=True))


def lag(seconds: float, rate: float, interval: float, days: int, writers: int) -> None:
    """Events at ``rate``/s into recent sends while beat's recount runs every ``interval``;
    lag = end of the first recount that started after the event's commit - the commit."""
    recent = list(
        Intervention.objects.filter(
            sent_at__gte=timezone.now() - timezone.timedelta(days=2)
        ).values_list("pk", flat=True)[:20000]
    )
    committed: list[float] = []
    recounts: list[tuple[float, float]] = []
    stop = time.monotonic() + seconds

    def writer() -> None:
        targets = dict.fromkeys(random.sample(recent, min(len(recent), 20000)))
        interventions = Intervention.objects.in_bulk(list(targets))
        pool = list(interventions.values())
        next_at = time.monotonic()
        while time.monotonic() < stop:
            do_record_tracking_event(random.choice(pool), "clicked", source="bench")
            committed.append(time.monotonic())
            next_at += writers / rate
            time.sleep(max(0.0, next_at - time.monotonic()))
        close_old_connections()

    # Several writers: one thread cannot record 200 events/s on a busy machine.
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for thread in threads:
        thread.start()
    while time.monotonic() < stop:
        started = time.monotonic()
        do_refresh_recent_rollups(days)
        recounts.append((started, time.monotonic()))
        time.sleep(max(0.0, interval - (time.monotonic() - started)))
    for thread in threads:
        thread.join()
    durations = [end - start for start, end in recounts]
    lags = []
    for at in committed:
        after = [end for start, end in recounts if start >= at]
        if after:
            lags.append(after[0] - at)
    achieved = len(committed) / seconds
    print(f"recount of the last {days} days under {achieved:.0f} events/s: "
          f"p50 {statistics.median(durations):.2f} s  max {max(durations):.2f} s ({len(recounts)} runs)")  # fmt: skip
    if lags:
        print(f"lag event -> figures (recount every {interval:.0f} s): p50 "
              f"{statistics.median(lags):.1f} s  p95 {percentile(lags, 0.95):.1f} s  max {max(lags):.1f} s")  # fmt: skip


def track_rate(store: Store, requests: int, threads: int) -> None:
    ids = [str(pk) for pk in Intervention.objects.filter(store=store, sent_at__isnull=False)
           .values_list("pk", flat=True)[:5000]]  # fmt: skip
    key = do_issue_api_key(store, "bench-track")
    per_thread = requests // threads
    latencies: list[float] = []

    def worker() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
        for _ in range(per_thread):
            started = time.perf_counter()
            response = client.post(f"/api/v1/track/{random.choice(ids)}",
                                   {"event": random.choice(["opened", "clicked", "displayed"])},
                                   format="json")  # fmt: skip
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 201, response.content[:300]
        close_old_connections()

    started = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"POST /track: {len(latencies) / elapsed:.0f} req/s over {len(latencies)} requests, "
          f"{threads} threads; p50 {statistics.median(latencies) * 1000:.1f} ms "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms")  # fmt: skip


def pixel_rate(store: Store, requests: int, threads: int) -> None:
    """GET /o/<token>.gif, the email open pixel: a signed token, the dedupe lookup, a row."""
    paths = [
        open_pixel_url(pk).split("/o/", 1)[1]
        for pk in Intervention.objects.filter(
            store=store, channel="email", sent_at__isnull=False
        ).values_list("pk", flat=True)[:5000]
    ]
    per_thread = requests // threads
    latencies: list[float] = []

    def worker() -> None:
        browser = Client()
        for _ in range(per_thread):
            started = time.perf_counter()
            response = browser.get(f"/o/{random.choice(paths)}")
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            assert response["Content-Type"] == "image/gif"
        close_old_connections()

    started = time.monotonic()
    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    elapsed = time.monotonic() - started
    print(f"GET /o/<token>.gif: {len(latencies) / elapsed:.0f} req/s over {len(latencies)} "
          f"requests, {threads} threads; p50 {statistics.median(latencies) * 1000:.1f} ms "
          f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backfill", action="store_true", help="Rebuild every rollup first.")
    parser.add_argument("--repeat", type=int, default=20, help="Requests per endpoint.")
    parser.add_argument("--admin", action="store_true", help="Time the admin dashboard page.")
    parser.add_argument("--recounts", type=int, default=0, help="Time beat's recounts N times.")
    parser.add_argument("--raw", action="store_true", help="Time the pre-rollup raw query.")
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--lag", type=float, default=0, help="Seconds of steady events.")
    parser.add_argument("--rate", type=float, default=200, help="Events per second for --lag.")
    parser.add_argument("--interval", type=float, default=60, help="Recount every N s (beat).")
    parser.add_argument("--days", type=int, default=2, help="Days each recount covers.")
    parser.add_argument("--writers", type=int, default=4, help="Threads writing for --lag.")
    parser.add_argument("--track", type=int, default=0, help="POST /track requests to time.")
    parser.add_argument("--pixel", type=int, default=0, help="Open pixel requests to time.")
    parser.add_argument("--threads", type=int, default=4)
    run(parser.parse_args())


def run(args: argparse.Namespace) -> None:
    store = Store.objects.filter(name="Bench 0").first()
    if store is None:
        sys.exit("no 'Bench 0' store: run manage.py seed_analytics_bench first")
    counts()
    if args.backfill:
        backfill()
    if args.recounts:
        recounts(args.recounts)
    if args.repeat:
        latency(client_for(store), store, args.repeat)
    if args.admin:
        admin_dashboard(store, args.repeat or 5)
    if args.raw:
        raw_performance(store)
    if args.explain:
        explain(store)
    if args.lag:
        lag(args.lag, args.rate, args.interval, args.days, args.writers)
    ingest(store, args)


def ingest(store: Store, args: argparse.Namespace) -> None:
    if args.track:
        track_rate(store, args.track, args.threads)
    if args.pixel:
        pixel_rate(store, args.pixel, args.threads)


if __name__ == "__main__":
    main()
