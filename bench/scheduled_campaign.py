"""A scheduled campaign's run over N eligible shoppers: select + assign + enqueue.

Seeds its own database (`ie_sched_bench`, dropped first) with one store and N shoppers
(each with an email and one cart abandoned 1 to 24 h ago, 50 to 250 EUR, not converted, so
all of them match the audience), a scheduled campaign with a 50/50 split and a 10%
holdout, launched. Then, in a fresh process so the seeding does not count, it runs
the campaign's slot exactly as the beat task does (`do_run_scheduled_campaign`) and
reports the wall time, the process's CPU time, shoppers per second and its peak RSS.

    .venv/bin/python bench/scheduled_campaign.py --shoppers 100000

Enqueue goes to the Redis database given by REDIS_URL (default db 14), flushed before
and after, with no worker consuming: what is measured is the run up to the broker.
"""

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DB = "ie_sched_bench"
SEED = 20260115


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/{DB}"
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    env["DJANGO_SETTINGS_MODULE"] = "config.settings_dev"
    env["LOG_LEVEL"] = "WARNING"
    return env


def django_setup() -> None:
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    import structlog

    # One log line per decision would measure the terminal, not the engine.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))


def seed(count: int) -> int:
    django_setup()
    from django.db import connection
    from django.utils import timezone

    from campaigns.actions import do_create_campaign, do_transition_campaign
    from campaigns.models import Campaign, CampaignKind
    from interventions.models import Cart
    from stores.actions import do_create_store
    from stores.models import Shopper

    store, _ = do_create_store(name="Bench", timezone="UTC")
    store.quiet_hours_start = store.quiet_hours_end = None
    store.save()
    rng = random.Random(SEED)
    now = timezone.now()
    for start in range(0, count, 10_000):
        ids = range(start, min(start + 10_000, count))
        Shopper.objects.bulk_create(
            [Shopper(store=store, external_id=f"s{n:07d}", email=f"s{n}@example.test") for n in ids]
        )
        shoppers = Shopper.objects.filter(store=store, external_id__in=[f"s{n:07d}" for n in ids])
        Cart.objects.bulk_create(
            [
                Cart(
                    store=store,
                    shopper=shopper,
                    external_id=f"c-{shopper.external_id}",
                    value=rng.randint(50, 250),
                    currency="EUR",
                    items=[{"sku": f"SKU-{rng.randint(1, 500)}", "price": "50.00"}],
                    abandoned_at=now - timedelta(minutes=rng.randint(61, 24 * 60 - 1)),
                )
                for shopper in shoppers
            ]
        )
    campaign = do_create_campaign(
        Campaign(
            store=store,
            name="Daily nudge",
            kind=CampaignKind.SCHEDULED,
            channel="email",
            schedule_cron="0 10 * * *",
            variants=[{"key": "control", "weight": 50}, {"key": "ten_off", "weight": 50,
                                                          "discount_percent": 10}],
            holdout_percent=10,
            audience={
                "match": "all",
                "conditions": [
                    {"field": "cart.abandoned_hours", "op": "between", "value": [1, 24]},
                    {"field": "cart.converted", "op": "eq", "value": False},
                    {"field": "cart.value", "op": "gte", "value": 50},
                ],
            },
        ),
        "bench",
    )  # fmt: skip
    do_transition_campaign(campaign, "launch", "bench")
    # A live database has planner statistics; freshly bulk-loaded tables do not.
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return campaign.pk


def run(campaign_id: int) -> dict[str, object]:
    django_setup()
    from campaigns.actions import do_run_scheduled_campaign

    started = time.perf_counter()
    cpu = time.process_time()
    result = do_run_scheduled_campaign(campaign_id)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    assert result is not None
    return {
        "selected": result.selected,
        "sent": result.sent,
        "skipped": result.skipped,
        "skip_reasons": result.skip_reasons,
        "seconds": round(seconds, 1),
        # The machine may be shared: the run's own CPU time is the steadier figure.
        "cpu_seconds": round(cpu, 1),
        "shoppers_per_second": round(result.selected / seconds),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shoppers", type=int, default=100_000)
    parser.add_argument("--run-only", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_only:
        print(json.dumps(run(args.run_only)))
        return

    import psycopg
    import redis

    env = environment()
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    os.environ.update(env)
    started = time.perf_counter()
    campaign_id = seed(args.shoppers)
    print(f"seeded {args.shoppers} shoppers in {time.perf_counter() - started:.0f} s", flush=True)
    measured = subprocess.run(
        [sys.executable, __file__, "--run-only", str(campaign_id)],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    print(measured.stdout.strip().splitlines()[-1])
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()


if __name__ == "__main__":
    main()
