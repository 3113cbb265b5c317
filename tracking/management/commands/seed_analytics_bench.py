"""Seed a large, realistic history for the analytics benchmark (docs/benchmarks.md,
"Analytics at volume").

PostgreSQL only, and only for a database made for the bench: it adds stores named
"Bench N", prints their API keys, and while it loads it drops the indexes and constraints
of the tables it fills (interventions, carts, shoppers, delivery attempts, tracking rows,
orders, and the foreign keys pointing at them), then rebuilds them exactly as the
migrations left them (their own definitions, read from the catalog), and ANALYZEs.
Building an index once by sorting is far cheaper than maintaining it row by row: with
every index in place, each intervention updates 15 b-trees, random UUIDs among them, and
each tracking row probes its foreign keys (about 2,600 interventions/s; without, the
load runs at the speed of the heap writes).

Rows are written in time order, a chunk per INSERT … SELECT over generate_series, with
data-modifying CTEs so no row passes through Python; the heap ends up ordered by time,
as a live table is. What is written, per intervention (numbers are the SQL's odds):
- a cart per one or two interventions (a reminder, then sometimes a second one), each
  cart's shopper in the cart's store; shoppers come back (about 3 carts each);
- channel by campaign: per store an email reminder with an A/B test (10 % off on B), an
  on-site WebSocket nudge, a last-call SMS (5 % off), an app push, a second email, and
  sends no campaign chose;
- 17 % suppressed (the engine's reasons), 4 % cancelled at checkout, 1 to 5 % refused at
  send (per channel); of the sent, delivered at 86 to 97 % per channel, 4 % of emails
  bounce after the send;
- attempts: one per send, a transient error before it for 5 %;
- tracking: delivered; email opens by 47 % of the delivered (repeats, some within the
  dedupe window and flagged duplicate, some an hour later) and privacy-proxy opens
  (``machine``) for another 28 %; on-site nudges displayed and opened; push opens;
  clicks (7 to 17 % per channel) with repeats flagged duplicate; bounces;
- orders for 2 to 4.5 % of the delivered sends (per channel), 3 hours after the send,
  values skewed like carts' (exponential, mean ~180), with their ``converted`` tracking
  row, last-touch credits and the campaign's discount netted out.
"""

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection, transaction

from campaigns.models import Campaign
from stores.actions import do_create_store
from stores.models import Store

# The tables the seed fills: their indexes and constraints (and the foreign keys from
# other tables into them) are dropped during the load and rebuilt after it.
LOADED = (
    "stores_shopper",
    "interventions_cart",
    "interventions_intervention",
    "interventions_deliveryattempt",
    "tracking_trackingevent",
    "tracking_conversion",
)

# Bench 0 holds 70 % of the shoppers (so of everything): the biggest tenant's dashboard
# is the slow one. Time zones differ so the recounts group stores as in production.
ZONES = ("Europe/Paris", "Europe/Paris", "America/New_York", "UTC", "Asia/Tokyo")
CURRENCIES = ("EUR", "EUR", "USD", "GBP", "JPY")
# (name, channel, variants): slot n + 1 in the SQL; slot 6 is no campaign (email).
CAMPAIGNS = (
    ("Cart reminder email", "email", True),
    ("On-site nudge", "websocket", False),
    ("Last call SMS", "sms", False),
    ("App reminder push", "push", False),
    ("Second reminder email", "email", False),
)

SHOPPERS_SQL = """
INSERT INTO stores_shopper (id, external_id, email, phone, first_name, locale, timezone,
    segment, channel_preferences, opted_out_channels, created_at, updated_at, store_id,
    country)
SELECT %(base)s + s, 'bench-shopper-' || lpad(s::text, 10, '0'),
       'shopper' || s || '@example.test', '+3361' || lpad(s::text, 7, '0'), '', 'en', 'UTC',
       '', '[]', '[]', now() - interval '120 days', now() - interval '120 days', b.store_id, 'FR'
FROM generate_series(0, %(count)s - 1) AS s
JOIN bench_stores b
  ON b.idx = CASE WHEN s %% 10 < 7 THEN 0 ELSE 1 + s %% (%(stores)s - 1) END
"""

# A cart per two interventions out of three: intervention g belongs to cart 2g/3, so
# carts alternate two reminders and one. Chunks start at a multiple of 3, so a cart's
# interventions are in one chunk.
CARTS_SQL = """
INSERT INTO interventions_cart (id, external_id, value, currency, items, abandoned_at,
    probability, recommended_action, model_version, created_at, updated_at, shopper_id,
    store_id)
SELECT %(cart_base)s + c, 'bench-cart-' || lpad(c::text, 10, '0'), t.value, b.currency,
       '[]', t.at, random(), '', 'bench', t.at - interval '25 minutes', t.at,
       %(shopper_base)s + sh.s, b.store_id
FROM generate_series(%(first_cart)s, %(last_cart)s) AS c
CROSS JOIN LATERAL (SELECT (c::bigint * 7919) %% %(shoppers)s AS s) sh
CROSS JOIN LATERAL (
    SELECT to_timestamp(%(start)s + (c * 1.5) * %(step)s) - interval '20 minutes' AS at,
           round((15 - 160 * ln(1 - random()))::numeric, 2) AS value
) t
JOIN bench_stores b
  ON b.idx = CASE WHEN sh.s %% 10 < 7 THEN 0 ELSE 1 + sh.s %% (%(stores)s - 1) END
"""

CHUNK_SQL = """
WITH picked AS (
    SELECT g, (2 * g) / 3 AS c, random() AS r_slot, random() AS r_status,
           random() AS r_deliver, random() AS r_open, random() AS r_click, random() AS r_order,
           random() AS r_extra, random() AS r_value,
           to_timestamp(%(start)s + (g + random()) * %(step)s) AS created
    FROM generate_series(%(first)s, %(last)s) AS g
), slotted AS (
    SELECT p.*, (p.c::bigint * 7919) %% %(shoppers)s AS s,
           CASE WHEN r_slot < 0.30 THEN 1 WHEN r_slot < 0.50 THEN 2 WHEN r_slot < 0.62 THEN 3
                WHEN r_slot < 0.75 THEN 4 WHEN r_slot < 0.85 THEN 5 ELSE 6 END AS slot
    FROM picked p
), shaped AS (
    SELECT x.*, b.store_id, b.currency, b.campaigns[x.slot] AS campaign_id,  -- slot 6: NULL
           v.channel, v.transport, v.delay, v.refused, v.delivers, v.clicks, v.orders,
           CASE WHEN x.slot = 1 AND x.g %% 2 = 0 THEN 'A' WHEN x.slot = 1 THEN 'B' ELSE '' END
               AS variant,
           CASE WHEN x.slot = 1 AND x.g %% 2 = 1 THEN 0.10 WHEN x.slot = 3 THEN 0.05 ELSE 0 END
               AS discount_rate
    FROM slotted x
    JOIN bench_stores b
      ON b.idx = CASE WHEN x.s %% 10 < 7 THEN 0 ELSE 1 + x.s %% (%(stores)s - 1) END
    JOIN (VALUES
        (1, 'email', 'anymail', interval '60 minutes', 0.025, 0.96, 0.12, 0.030),
        (2, 'websocket', 'websocket', interval '2 seconds', 0.010, 0.94, 0.17, 0.045),
        (3, 'sms', 'twilio', interval '180 minutes', 0.035, 0.97, 0.10, 0.035),
        (4, 'push', 'fcm', interval '30 minutes', 0.050, 0.86, 0.07, 0.020),
        (5, 'email', 'anymail', interval '24 hours', 0.025, 0.96, 0.12, 0.030),
        (6, 'email', 'anymail', interval '45 minutes', 0.025, 0.96, 0.12, 0.025)
    ) AS v(slot, channel, transport, delay, refused, delivers, clicks, orders)
      ON v.slot = x.slot
), fated AS (
    SELECT sh.*, gen_random_uuid() AS id,
           CASE WHEN r_status < 0.17 THEN 'suppressed'
                WHEN r_status < 0.21 THEN 'cancelled'
                WHEN r_status < 0.21 + refused THEN 'failed'
                WHEN channel = 'email' AND r_deliver >= 0.96 THEN 'failed'  -- bounced
                WHEN r_deliver < delivers THEN 'delivered'
                ELSE 'sent' END AS status,
           CASE WHEN r_status >= 0.21 + refused THEN created + delay END AS sent_at,
           CASE WHEN r_status >= 0.21 + refused AND r_deliver < delivers
                     AND NOT (channel = 'email' AND r_deliver >= 0.96)
                THEN created + delay + interval '40 seconds' END AS delivered_at,
           'bench-' || lpad(g::text, 10, '0') AS order_id,
           round((15 - 160 * ln(1 - r_value))::numeric, 2) AS order_value
    FROM shaped sh
), ordering AS (
    SELECT f.*, round(f.order_value * f.discount_rate, 2) AS order_discount
    FROM fated f WHERE f.delivered_at IS NOT NULL AND f.r_order < f.orders
), interventions AS (
    INSERT INTO interventions_intervention (
        id, origin, requested_channel, channel, fallback_channels, status, status_reason,
        decision, template_key, personalization, content, attempts, provider_message_id,
        idempotency_key, request_fingerprint, queued_at, sent_at, delivered_at, created_at,
        updated_at, campaign_id, cart_id, shopper_id, store_id, variant)
    SELECT id, CASE WHEN slot = 6 THEN 'event' ELSE 'campaign' END, channel, channel, '[]',
           status,
           CASE WHEN status = 'suppressed' THEN
                CASE WHEN r_extra < 0.50
                     THEN 'suppressed: probability 0.' || lpad((g %% 30)::text, 2, '0')
                          || ' below threshold 0.30'
                     WHEN r_extra < 0.72 THEN 'suppressed: frequency cap 1/hour, last sent '
                          || to_char(created - interval '23 minutes', 'HH24:MI')
                     WHEN r_extra < 0.88 THEN 'suppressed: cart already converted'
                     ELSE 'suppressed: no usable channel' END
                WHEN status = 'cancelled' THEN 'checkout completed'
                WHEN status = 'failed' AND sent_at IS NULL THEN 'permanent error'
                WHEN status = 'failed' THEN 'bounced'
                ELSE '' END,
           '{}', '', '{}', '{}', CASE WHEN r_status >= 0.21 THEN 1 ELSE 0 END, '', '', '',
           CASE WHEN r_status >= 0.17 THEN created END, sent_at, delivered_at,
           created, coalesce(delivered_at, sent_at, created),
           campaign_id, %(cart_base)s + c, %(shopper_base)s + s, store_id, variant
    FROM fated
    RETURNING 1
), attempts AS (
    INSERT INTO interventions_deliveryattempt (channel, transport, outcome, error,
        provider_message_id, started_at, finished_at, intervention_id)
    SELECT f.channel, f.transport, a.outcome, a.error, '', a.at, a.at + interval '300 ms', f.id
    FROM fated f
    CROSS JOIN LATERAL (
        SELECT 'transient_error' AS outcome,
               'provider_unavailable: 503 Service Unavailable' AS error,
               f.created + f.delay - interval '1 minute' AS at
        WHERE f.r_status >= 0.21 AND f.r_extra < 0.05
        UNION ALL
        SELECT 'permanent_error', CASE f.channel
                   WHEN 'sms' THEN 'invalid_number: Twilio 400 code 21211'
                   WHEN 'push' THEN 'no_live_device: every device token is dead'
                   WHEN 'websocket' THEN 'room_unavailable: no live connection'
                   ELSE 'recipient_refused: 406 inactive recipient' END,
               f.created + f.delay
        WHERE f.r_status >= 0.21 AND f.sent_at IS NULL
        UNION ALL
        SELECT 'succeeded', '', f.sent_at - interval '300 ms' WHERE f.sent_at IS NOT NULL
    ) AS a
    RETURNING 1
), tracked AS (
    INSERT INTO tracking_trackingevent (kind, source, occurred_at, revenue, metadata,
        recorded_at, intervention_id, store_id, duplicate, machine)
    SELECT e.kind, e.source, e.at, e.revenue, e.metadata, e.at, f.id, f.store_id,
           e.duplicate, e.machine
    FROM fated f
    CROSS JOIN LATERAL (
        SELECT 'delivered' AS kind,
               CASE f.channel WHEN 'email' THEN 'email_webhook' WHEN 'sms' THEN 'sms_webhook'
                    ELSE f.channel END AS source,
               f.delivered_at AS at, NULL::numeric AS revenue, '{}'::jsonb AS metadata,
               false AS duplicate, false AS machine
        WHERE f.delivered_at IS NOT NULL
        UNION ALL
        SELECT 'bounced', 'email_webhook', f.sent_at + interval '2 minutes', NULL, '{}',
               false, false
        WHERE f.status = 'failed' AND f.sent_at IS NOT NULL
        UNION ALL
        -- The shopper's opens: the first counts; the pixel reloads within the dedupe
        -- window are flagged duplicate, a reopen an hour later is counted (still one
        -- opened intervention).
        SELECT 'opened', 'pixel',
               f.sent_at + interval '12 minutes' + (n %% 4) * interval '15 seconds'
                   + (n / 4) * interval '1 hour',
               NULL, '{}', n %% 4 <> 0, false
        FROM generate_series(0, (f.r_extra * 22)::int) AS n
        WHERE f.channel = 'email' AND f.delivered_at IS NOT NULL AND f.r_open < 0.47
        UNION ALL
        -- A privacy proxy fetching every image (ESP-flagged): kept, never counted.
        SELECT 'opened', 'email_webhook', f.delivered_at + n * interval '3 minutes', NULL,
               '{}', false, true
        FROM generate_series(0, (f.r_extra * 14)::int) AS n
        WHERE f.channel = 'email' AND f.delivered_at IS NOT NULL AND f.r_open >= 0.47
              AND f.r_open < 0.75
        UNION ALL
        -- On-site nudges: shown on each page view, then read.
        SELECT CASE WHEN n = 0 THEN 'opened' ELSE 'displayed' END, 'websocket',
               f.delivered_at + n * interval '45 seconds', NULL, '{}', false, false
        FROM generate_series(0, (f.r_extra * 12)::int) AS n
        WHERE f.channel = 'websocket' AND f.delivered_at IS NOT NULL AND f.r_open < 0.90
        UNION ALL
        SELECT 'opened', 'api', f.delivered_at + interval '20 minutes', NULL, '{}', false,
               false
        WHERE f.channel = 'push' AND f.delivered_at IS NOT NULL AND f.r_open < 0.24
        UNION ALL
        -- Clicks, and the double taps within the dedupe window.
        SELECT 'clicked', CASE f.channel WHEN 'websocket' THEN 'websocket' ELSE 'link' END,
               f.sent_at + interval '15 minutes' + n * interval '4 seconds', NULL, '{}',
               n > 0, false
        FROM generate_series(0, CASE WHEN f.r_extra < 0.4 THEN 1 ELSE 0 END) AS n
        WHERE f.delivered_at IS NOT NULL AND f.r_click < f.clicks
        UNION ALL
        SELECT 'converted', 'checkout', f.sent_at + interval '3 hours',
               f.order_value - round(f.order_value * f.discount_rate, 2),
               jsonb_build_object('order_id', f.order_id, 'currency', f.currency,
                                  'attribution', 'last_touch', 'weight', '1',
                                  'primary', true, 'window_hours', 72),
               false, false
        WHERE f.delivered_at IS NOT NULL AND f.r_order < f.orders
    ) AS e
    RETURNING 1
), ordered AS (
    INSERT INTO tracking_conversion (order_id, user_id, cart_external_id, value, currency,
        discount, recovered_revenue, source, fingerprint, occurred_at, recorded_at,
        intervention_id, shopper_id, cart_id, store_id, attribution_model, credits)
    SELECT order_id, 'bench-shopper-' || s, 'bench-cart-' || lpad(c::text, 10, '0'),
           order_value, currency, order_discount, order_value - order_discount, 'checkout', '',
           sent_at + interval '3 hours', sent_at + interval '3 hours', id,
           %(shopper_base)s + s, %(cart_base)s + c, store_id, 'last_touch',
           jsonb_build_array(jsonb_build_object(
               'intervention_id', id, 'weight', '1',
               'recovered_revenue', (order_value - order_discount)::text))
    FROM ordering
    RETURNING 1
)
SELECT (SELECT count(*) FROM interventions), (SELECT count(*) FROM attempts),
       (SELECT count(*) FROM tracked), (SELECT count(*) FROM ordered)
"""


class Command(BaseCommand):
    help = (
        "Seed N interventions with their carts, shoppers, attempts, tracking rows (~5 each) "
        "and orders for bench/analytics_latency.py, into a database made for it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interventions", type=int, default=1_000_000)
        parser.add_argument("--chunk", type=int, default=300_000, help="Rows per statement.")
        parser.add_argument("--stores", type=int, default=4)
        parser.add_argument(
            "--shoppers", type=int, default=0, help="Default: one per 5 interventions."
        )
        parser.add_argument("--days", type=int, default=90, help="History spread over this.")

    def handle(self, *args: Any, **options: Any) -> None:
        if connection.vendor != "postgresql":
            raise CommandError("the bench seed needs PostgreSQL (generate_series)")
        if not 2 <= options["stores"] <= len(ZONES):
            raise CommandError(f"--stores must be between 2 and {len(ZONES)}")
        if Store.objects.filter(name__startswith="Bench ").exists():
            raise CommandError("already seeded: drop and re-create the bench database")
        count = options["interventions"]
        chunk = max(3, options["chunk"] // 3 * 3)  # a cart's interventions in one chunk
        shoppers = options["shoppers"] or max(1, count // 5)
        started = time.monotonic()
        stores = self._stores(options["stores"])
        with connection.cursor() as cursor:
            # One connection, its own settings: room to sort the indexes in memory, and no
            # wait for the WAL flush at each chunk's commit (a crash loses a bench seed).
            cursor.execute("SET maintenance_work_mem = '1GB'")
            cursor.execute("SET synchronous_commit = off")
            cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM stores_shopper")
            shopper_base = cursor.fetchone()[0]
            cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM interventions_cart")
            cart_base = cursor.fetchone()[0]
            dropped = self._drop_indexes(cursor)
        self._log(started, f"dropped {len(dropped)} indexes and constraints")
        span = options["days"] * 86400
        params = {
            "stores": options["stores"],
            "shoppers": shoppers,
            "shopper_base": shopper_base,
            "cart_base": cart_base,
            "start": time.time() - span,
            "step": span / count,
        }
        totals = [0, 0, 0, 0]
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(SHOPPERS_SQL, {**params, "base": shopper_base, "count": shoppers})
            self._log(started, f"{shoppers} shoppers")
            for first in range(0, count, chunk):
                last = min(first + chunk, count) - 1
                with transaction.atomic(), connection.cursor() as cursor:
                    cursor.execute(
                        CARTS_SQL,
                        {**params, "first_cart": 2 * first // 3, "last_cart": 2 * last // 3},
                    )
                    cursor.execute(CHUNK_SQL, {**params, "first": first, "last": last})
                    counts = cursor.fetchone()
                totals = [a + b for a, b in zip(totals, counts, strict=True)]
                self._log(
                    started,
                    f"{totals[0]:>10} interventions {totals[1]:>10} attempts "
                    f"{totals[2]:>10} tracking rows {totals[3]:>8} orders",
                )
        finally:
            with connection.cursor() as cursor:
                self._rebuild(cursor, dropped, started)
        with connection.cursor() as cursor:
            # The seed chose these ids itself: the next row the app inserts must not reuse one.
            for table in ("stores_shopper", "interventions_cart"):
                cursor.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608 (constants)
                    f"(SELECT max(id) FROM {table}))"
                )
            cursor.execute("DROP TABLE IF EXISTS bench_stores")
            # VACUUM sets the visibility map and hint bits, as autovacuum would have on a
            # live table, so the first benchmark does not pay for it (and ANALYZEs).
            for table in LOADED:
                cursor.execute(f"VACUUM (ANALYZE) {table}")
                self._log(started, f"vacuumed and analyzed {table}")
        self.stdout.write(
            json.dumps(
                {
                    "stores": [{"store_id": str(pk), "api_key": key} for pk, key in stores],
                    "shoppers": shoppers,
                    "interventions": totals[0],
                    "attempts": totals[1],
                    "tracking_events": totals[2],
                    "conversions": totals[3],
                    "seconds": round(time.monotonic() - started, 1),
                }
            )
        )

    def _log(self, started: float, message: str) -> None:
        self.stderr.write(f"{time.monotonic() - started:7.0f} s  {message}")

    @staticmethod
    def _drop_indexes(cursor: Any) -> list[tuple[str, str, str]]:
        """Drop the loaded tables' indexes and constraints (and foreign keys into them);
        what to run to put each back, in order: keys, indexes, then foreign keys."""
        cursor.execute(
            """
            SELECT 0, c.conrelid::regclass::text, c.conname,
                   pg_get_constraintdef(c.oid), c.contype
            FROM pg_constraint c
            WHERE c.contype IN ('p', 'u', 'f')
              AND (c.conrelid::regclass::text = ANY(%(tables)s)
                   OR c.confrelid::regclass::text = ANY(%(tables)s))
            UNION ALL
            SELECT 1, i.indrelid::regclass::text, i.indexrelid::regclass::text,
                   pg_get_indexdef(i.indexrelid), 'i'
            FROM pg_index i
            WHERE i.indrelid::regclass::text = ANY(%(tables)s)
              AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                                                              AND c.contype IN ('p', 'u'))
            """,
            {"tables": list(LOADED)},
        )
        rows = cursor.fetchall()
        foreign = [row for row in rows if row[4] == "f"]
        keys = [row for row in rows if row[4] in ("p", "u")]
        indexes = [row for row in rows if row[4] == "i"]
        for _, table, name, _, _ in foreign + keys:
            cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        for _, _, name, _, _ in indexes:
            cursor.execute(f"DROP INDEX {name}")
        rebuild = [
            (table, name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for _, table, name, definition, _ in keys
        ]
        rebuild += [(table, name, definition) for _, table, name, definition, _ in indexes]
        rebuild += [
            (table, name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
            for _, table, name, definition, _ in foreign
        ]
        return rebuild

    def _rebuild(self, cursor: Any, dropped: list[tuple[str, str, str]], started: float) -> None:
        for table, name, statement in dropped:
            cursor.execute(statement)
            self._log(started, f"rebuilt {table} {name}")

    def _stores(self, count: int) -> list[tuple[Any, str]]:
        stores = []
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS bench_stores")
            cursor.execute(
                "CREATE TABLE bench_stores (idx int, store_id uuid, campaigns bigint[], "
                "currency text)"
            )
            for idx in range(count):
                store, key = do_create_store(name=f"Bench {idx}", timezone=ZONES[idx])
                campaigns = [
                    Campaign.objects.create(
                        store=store,
                        name=name,
                        trigger="prediction_high",
                        channel=channel,
                        variants=[{"key": "A", "weight": 50.0}, {"key": "B", "weight": 50.0}]
                        if variants
                        else [],
                    ).pk
                    for name, channel, variants in CAMPAIGNS
                ]
                cursor.execute(
                    "INSERT INTO bench_stores VALUES (%s, %s, %s, %s)",
                    [idx, store.pk, campaigns, CURRENCIES[idx]],
                )
                stores.append((store.pk, key))
        return stores
