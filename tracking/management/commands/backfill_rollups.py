"""Rebuild the analytics rollups from the raw rows (docs/analytics.md, "Rollups")."""

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Min
from django.utils import timezone

from interventions.models import Intervention
from tracking.rollups import do_backfill_rollups


class Command(BaseCommand):
    help = (
        "Recount the daily rollups of a range of store-local days from the raw rows, a few "
        "days per transaction. Default: from the oldest intervention still kept to today."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", type=date.fromisoformat, help="First day, YYYY-MM-DD.")
        parser.add_argument("--until", type=date.fromisoformat, help="Last day (default today).")
        parser.add_argument("--store", type=UUID, action="append", help="Only this store (repeat).")
        parser.add_argument("--chunk-days", type=int, default=7, help="Days per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        stores = options["store"]
        # A day of margin either side: the stores' days are not UTC days.
        until = options["until"] or timezone.now().date() + timedelta(days=1)
        since = options["since"] or self._oldest(stores)
        if since is None:
            self.stdout.write("no interventions: nothing to recount")
            return
        if since > until:
            raise CommandError("--since must not be after --until")
        if options["chunk_days"] < 1:
            raise CommandError("--chunk-days must be at least 1")
        total = 0
        for zone, first, last, written in do_backfill_rollups(
            since, until, store_ids=stores, chunk_days=options["chunk_days"]
        ):
            total += written
            self.stdout.write(f"{zone} {first}..{last}: {written} rollup rows")
        self.stdout.write(f"done: {total} rollup rows for {since}..{until}")

    @staticmethod
    def _oldest(stores: list[UUID] | None) -> date | None:
        rows = Intervention.objects.all()
        if stores:
            rows = rows.filter(store_id__in=stores)
        oldest = rows.aggregate(oldest=Min("created_at"))["oldest"]
        return oldest.date() - timedelta(days=1) if oldest else None
