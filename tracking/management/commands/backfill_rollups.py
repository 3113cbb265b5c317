"""Rebuild the analytics rollups from the raw rows (docs/analytics.md, "Rollups")."""

from datetime import date, timedelta
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Min
from django.utils import timezone

from interventions.models import Intervention
from tracking.rollups import do_backfill_rollups, retention_horizon


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
        parser.add_argument(
            "--force",
            action="store_true",
            help="Recount days before the retention horizon too: their pruned rows are then "
            "missing from their rollups for good.",
        )

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
        horizon = retention_horizon()
        if horizon is not None and since < horizon and not options["force"]:
            if options["since"]:
                raise CommandError(
                    f"--since {since} is before {horizon}, the first day whose raw rows "
                    "retention has not pruned (RETENTION_TRACKING_EVENTS_DAYS, "
                    "RETENTION_FINISHED_INTERVENTIONS_DAYS): a recount would empty the "
                    "rollups of those days, their only record left. Start at "
                    f"--since {horizon}, or add --force to recount them anyway."
                )
            self.stdout.write(
                f"skipping the days before {horizon}: retention pruned their raw rows, so "
                "their rollups are kept as they are (--force recounts them anyway)"
            )
            since = horizon
            if since > until:
                self.stdout.write("nothing to recount")
                return
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
