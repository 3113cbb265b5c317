"""Celery tasks of the tracking app: thin adapters over ``tracking.rollups``."""

from celery import shared_task

from tracking import rollups


@shared_task(acks_late=True, time_limit=600, soft_time_limit=540)
def refresh_recent_rollups(days: int | None = None) -> dict[str, int]:
    # Idempotent (a recount): a repeat or an overlap with the next run is harmless.
    return rollups.do_refresh_recent_rollups(days)
