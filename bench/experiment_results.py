"""A campaign's results over 1 M seeded exposures: how long, at what peak memory.

Creates its own database (`ie_bench_experiments`, dropped first), a store and a running
campaign with two arms and a 10% holdout, then 1 M shoppers exposed over 14 days
(server-side `generate_series`, seeded with `setseed`, so every run has the same rows):
control converts at 10%, the treatment at 11%, the holdout at 9%, each checkout within the
attribution window and worth 20-120. It then times what beat runs per campaign
(`do_refresh_results`: the one query, the statistics, the snapshot row), `--repeat` times.

    .venv/bin/python bench/experiment_results.py --exposures 1000000 --repeat 3

Peak memory is the Python heap (tracemalloc) during one computation, and the process's
peak RSS growth over the computations.
"""

import argparse
import os
import resource
import subprocess
import sys
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
DB = "ie_bench_experiments"
URL = f"postgres://postgres@127.0.0.1:5432/{DB}"


def prepare_database() -> None:
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {DB}")
    env = {**os.environ, "DATABASE_URL": URL, "ALLOW_DEV_SECRET_KEY": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)


def seed(campaign_id: int, store_id: str, exposures: int, launched_at: str) -> None:
    """Shoppers, exposures and checkouts, in SQL so the client stays out of the picture."""
    with psycopg.connect(URL.replace("postgres://", "postgresql://"), autocommit=True) as conn:
        conn.execute("SELECT setseed(0.42)")
        conn.execute(
            """
            INSERT INTO stores_shopper (store_id, external_id, email, phone, first_name, locale,
                timezone, segment, channel_preferences, opted_out_channels, created_at, updated_at)
            SELECT %(store)s, 'shopper-' || n, '', '', '', '', '', '', '[]', '[]', now(), now()
            FROM generate_series(1, %(n)s) AS n
            """,
            {"store": store_id, "n": exposures},
        )
        conn.execute(
            """
            INSERT INTO campaigns_exposure (campaign_id, shopper_id, arm, exposed_at)
            SELECT %(campaign)s, s.id,
                   CASE WHEN r < 0.10 THEN 'holdout' WHEN r < 0.55 THEN 'control' ELSE 'b' END,
                   %(launched)s::timestamptz + (random() * interval '14 days')
            FROM (SELECT id, random() AS r FROM stores_shopper) AS s
            """,
            {"campaign": campaign_id, "launched": launched_at},
        )
        conn.execute(
            """
            INSERT INTO interventions_cart (store_id, shopper_id, external_id, currency, items,
                recommended_action, model_version, created_at, updated_at, value,
                converted_at, conversion_value)
            SELECT %(store)s, e.shopper_id, 'cart-' || e.shopper_id, 'EUR', '[]', '', '',
                   now(), now(), v, e.exposed_at + random() * interval '72 hours', v
            FROM (SELECT shopper_id, arm, exposed_at, round((20 + random() * 100)::numeric, 2) AS v
                  FROM campaigns_exposure) AS e
            WHERE random() < CASE e.arm WHEN 'holdout' THEN 0.09 WHEN 'control' THEN 0.10
                                        ELSE 0.11 END
            """,
            {"store": store_id},
        )
        conn.execute("ANALYZE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--exposures", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--reuse", action="store_true", help="keep the rows of the previous run (skips seeding)"
    )
    options = parser.parse_args()

    started = time.perf_counter()
    if not options.reuse:
        prepare_database()
    os.environ.update(
        DATABASE_URL=URL,
        ALLOW_DEV_SECRET_KEY="1",
        LOG_LEVEL="WARNING",
        DJANGO_SETTINGS_MODULE="config.settings",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.utils import timezone

    from campaigns import actions
    from campaigns.models import Campaign, CampaignStatus
    from stores.models import Store

    existing = Campaign.objects.filter(name="Bench").first()
    if options.reuse and existing is not None:
        campaign = existing
        print("reusing the seeded rows")
    else:
        campaign = create_and_seed(options.exposures, Store, Campaign, CampaignStatus, timezone)
        print(f"seeded {options.exposures:,} exposures in {time.perf_counter() - started:.1f} s")
    measure(campaign, options.repeat, actions)


def create_and_seed(exposures, Store, Campaign, CampaignStatus, timezone):
    store = Store.objects.create(name="Bench")
    launched = timezone.now() - timedelta(days=17)
    campaign = Campaign.objects.create(
        store=store,
        name="Bench",
        trigger="cart_abandoned",
        channel="email",
        status=CampaignStatus.RUNNING,
        launched_at=launched,
        variants=[{"key": "control", "weight": 50}, {"key": "b", "weight": 50}],
        holdout_percent=10,
    )
    seed(campaign.pk, str(store.pk), exposures, launched.isoformat())
    return campaign


def measure(campaign, repeat, actions):
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    timings = []
    heap_peak = 0
    for _ in range(repeat):
        tracemalloc.start()
        began = time.perf_counter()
        snapshot = actions.do_refresh_results(campaign, "bench")
        timings.append(time.perf_counter() - began)
        heap_peak = max(heap_peak, tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    document = snapshot.document
    total = sum(v["exposures"] for v in document["variants"]) + document["holdout"]["exposures"]
    print(f"exposures counted: {total:,}")
    for variant in document["variants"]:
        print(
            f"  {variant['key']}: {variant['exposures']:,} exposed, {variant['conversions']:,} "
            f"converted, lift {variant['lift']}"
        )
    print(f"  decision: {document['decision']}")
    print("results computation (s): " + ", ".join(f"{t:.2f}" for t in timings))
    print(
        f"best {min(timings):.2f} s; Python heap peak {heap_peak / 2**20:.1f} MiB; "
        f"peak RSS growth {rss_growth / 1024:.1f} MiB"
    )


if __name__ == "__main__":
    main()
