"""Seed a large, realistic history for the analytics benchmark (docs/benchmarks.md).

PostgreSQL only: each chunk is one INSERT … SELECT over generate_series with
data-modifying CTEs (interventions, then their tracking rows and orders), so the rows
never travel through Python. Not for production databases: it adds stores named
"Bench N" and prints their API keys.
"""

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from campaigns.models import Campaign
from stores.actions import do_create_store

# 70 % of the sends belong to the first store: the dashboard of the biggest tenant is the
# slow one. Channels: 60 % email, 20 % SMS, 10 % push, 10 % WebSocket; 15 % suppressed.
CHUNK_SQL = """
WITH picked AS (
    SELECT g,
           CASE WHEN g %% 10 < 7 THEN 0 ELSE 1 + g %% (%(stores)s - 1) END AS store_idx,
           random() AS r_channel, random() AS r_status, random() AS r_when
    FROM generate_series(%(first)s, %(last)s) AS g
), shaped AS (
    SELECT p.*, s.store_id, s.campaigns,
           now() - p.r_when * %(days)s * interval '1 day' AS created,
           CASE WHEN r_channel < 0.6 THEN 'email' WHEN r_channel < 0.8 THEN 'sms'
                WHEN r_channel < 0.9 THEN 'push' ELSE 'websocket' END AS channel
    FROM picked p JOIN bench_stores s ON s.idx = p.store_idx
), inserted AS (
    INSERT INTO interventions_intervention (
        id, origin, requested_channel, channel, fallback_channels, status, status_reason,
        decision, template_key, personalization, content, attempts, provider_message_id,
        idempotency_key, request_fingerprint, queued_at, sent_at, delivered_at, created_at,
        updated_at, campaign_id, shopper_id, store_id, variant)
    SELECT gen_random_uuid(), 'campaign', channel, channel, '[]',
           CASE WHEN r_status < 0.15 THEN 'suppressed'
                WHEN r_status < 0.75 THEN 'delivered' ELSE 'sent' END,
           CASE WHEN r_status < 0.15
                THEN 'suppressed: probability 0.' || (g %% 30) || ' below threshold 0.30'
                ELSE '' END,
           '{}', '', '{}', '{}', 1, '', '', '',
           CASE WHEN r_status >= 0.15 THEN created END,
           CASE WHEN r_status >= 0.15 THEN created + interval '1 minute' END,
           CASE WHEN r_status >= 0.15 AND r_status < 0.75 THEN created + interval '2 minutes' END,
           created, created,
           campaigns[1 + g %% 6],  -- one in six has no campaign (NULL past the array's end)
           %(shopper_base)s + g %% %(shoppers)s, store_id,
           CASE WHEN g %% 3 = 0 THEN 'A' WHEN g %% 3 = 1 THEN 'B' ELSE '' END
    FROM shaped
    RETURNING id, store_id, status, sent_at, delivered_at, shopper_id, channel
), facts AS (
    SELECT i.*, random() AS r_open, random() AS r_click, random() AS r_order,
           (random() * 10)::int AS opens
    FROM inserted i WHERE i.status <> 'suppressed'
), tracked AS (
    INSERT INTO tracking_trackingevent (kind, source, occurred_at, metadata, recorded_at,
                                        intervention_id, store_id, duplicate)
    SELECT e.kind, 'bench', e.at, '{}', e.at, f.id, f.store_id, e.duplicate
    FROM facts f
    CROSS JOIN LATERAL (
        SELECT 'delivered' AS kind, f.delivered_at AS at, false AS duplicate
        WHERE f.delivered_at IS NOT NULL
        UNION ALL
        -- Opens: the first counts; scanners and proxies repeat it (flagged duplicate),
        -- and some shoppers come back an hour later (counted again, one intervention).
        SELECT 'opened', f.sent_at + (n * interval '20 seconds') + (n / 3) * interval '1 hour',
               n %% 3 <> 0
        FROM generate_series(0, f.opens) AS n WHERE f.r_open < 0.6
        UNION ALL
        SELECT 'clicked', f.sent_at + interval '5 minutes', false WHERE f.r_click < 0.15
        UNION ALL
        SELECT 'clicked', f.sent_at + interval '5 minutes 10 seconds', true
        WHERE f.r_click < 0.05
        UNION ALL
        SELECT 'displayed', f.sent_at + interval '1 second', false WHERE f.channel = 'websocket'
    ) AS e
    RETURNING 1
), ordered AS (
    INSERT INTO tracking_conversion (order_id, user_id, cart_external_id, value, currency,
        discount, recovered_revenue, source, fingerprint, occurred_at, recorded_at,
        intervention_id, shopper_id, store_id)
    SELECT 'bench-' || f.id, 'shopper-' || f.shopper_id, '', v.value,
           CASE WHEN f.r_order < 0.02 THEN 'EUR' ELSE 'USD' END, 0, v.value, 'bench', '',
           f.sent_at + interval '3 hours', f.sent_at + interval '3 hours', f.id, f.shopper_id,
           f.store_id
    FROM facts f CROSS JOIN LATERAL (SELECT round((20 + f.r_order * 4000)::numeric, 2) AS value) v
    WHERE f.r_order < 0.03
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM tracked),
       (SELECT count(*) FROM ordered)
"""


class Command(BaseCommand):
    help = "Seed N interventions (and ~4-5 tracking rows each) for bench/analytics_latency.py."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interventions", type=int, default=1_000_000)
        parser.add_argument("--chunk", type=int, default=100_000)
        parser.add_argument("--stores", type=int, default=4)
        parser.add_argument("--shoppers", type=int, default=200_000)
        parser.add_argument("--days", type=int, default=90, help="History spread over this.")
        parser.add_argument(
            "--max-seconds", type=float, default=600, help="Stop after the chunk past this."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("the bench seed needs PostgreSQL (generate_series)")
        if options["stores"] < 2:
            raise CommandError("--stores must be at least 2")
        started = time.monotonic()
        stores = self._stores(options["stores"])
        shopper_base = self._shoppers(stores[0][0], options["shoppers"])
        totals = [0, 0, 0]
        first = 0
        while first < options["interventions"]:
            last = min(first + options["chunk"], options["interventions"]) - 1
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    CHUNK_SQL,
                    {
                        "first": first,
                        "last": last,
                        "stores": options["stores"],
                        "days": options["days"],
                        "shoppers": options["shoppers"],
                        "shopper_base": shopper_base,
                    },
                )
                counts = cursor.fetchone()
            totals = [a + b for a, b in zip(totals, counts, strict=True)]
            first = last + 1
            elapsed = time.monotonic() - started
            self.stderr.write(
                f"{totals[0]:>10} interventions {totals[1]:>10} tracking rows "
                f"{totals[2]:>8} orders  {elapsed:6.0f} s"
            )
            if elapsed > options["max_seconds"]:
                self.stderr.write("time budget spent: stopping here")
                break
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_stores")
            cursor.execute("ANALYZE interventions_intervention")
            cursor.execute("ANALYZE tracking_trackingevent")
            cursor.execute("ANALYZE tracking_conversion")
        self.stdout.write(
            json.dumps(
                {
                    "stores": [{"store_id": str(pk), "api_key": key} for pk, key in stores],
                    "interventions": totals[0],
                    "tracking_events": totals[1],
                    "conversions": totals[2],
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
        )

    def _stores(self, count: int) -> list[tuple[Any, str]]:
        stores = []
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_stores")
            cursor.execute("CREATE TABLE bench_stores (idx int, store_id uuid, campaigns bigint[])")
            for idx in range(count):
                store, key = do_create_store(name=f"Bench {idx}", timezone="Europe/Paris")
                campaigns = [
                    Campaign.objects.create(
                        store=store,
                        name=f"Campaign {n}",
                        trigger="prediction_high",
                        channel="email",
                    ).pk
                    for n in range(5)
                ]
                cursor.execute(
                    "INSERT INTO bench_stores VALUES (%s, %s, %s)", [idx, store.pk, campaigns]
                )
                stores.append((store.pk, key))
        return stores

    def _shoppers(self, store_id: Any, count: int) -> int:
        """Shoppers of the first store (a shopper's store does not matter to analytics);
        the id of the first."""
        with connection.cursor() as cursor:
            cursor.execute(
                """
                INSERT INTO stores_shopper (external_id, email, phone, first_name, locale,
                    timezone, segment, channel_preferences, opted_out_channels, created_at,
                    updated_at, store_id)
                SELECT 'bench-' || g, 'shopper' || g || '@example.test', '', '', 'en', 'UTC',
                       '', '[]', '[]', now(), now(), %s
                FROM generate_series(1, %s) AS g
                RETURNING id
                """,
                [store_id, count],
            )
            return min(row[0] for row in cursor.fetchall())
