"""Reports a client can repeat at will (WebSocket tracking frames): a repeat of the same
report within its window is dropped, a later one within the dedupe window is kept but
flagged, and deciding both takes one read of the tracking table per frame."""

from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from interventions.models import Intervention
from tests.tracking.conftest import send
from tracking.actions import do_record_tracking_event_once
from tracking.models import TrackingEvent

pytestmark = pytest.mark.django_db(transaction=True)

WITHIN = timedelta(seconds=30)


def reads_of_tracking(queries) -> int:
    return sum(
        1
        for query in queries
        if query["sql"].lstrip().upper().startswith("SELECT")
        and "tracking_trackingevent" in query["sql"]
    )


def test_a_repeated_click_frame_is_dropped_then_flagged_with_one_read_each(shop, settings):
    settings.TRACKING_DEDUPE_SECONDS = 60
    intervention = Intervention.objects.get(pk=send(shop))
    start = timezone.now()

    with time_machine.travel(start, tick=False), CaptureQueriesContext(connection) as first:
        do_record_tracking_event_once(intervention, "clicked", "websocket", WITHIN)
    with time_machine.travel(start + timedelta(seconds=10), tick=False):
        dropped = do_record_tracking_event_once(intervention, "clicked", "websocket", WITHIN)
    later_on = time_machine.travel(start + timedelta(seconds=40), tick=False)
    with later_on, CaptureQueriesContext(connection) as later:
        flagged = do_record_tracking_event_once(intervention, "clicked", "websocket", WITHIN)
    with time_machine.travel(start + timedelta(seconds=200), tick=False):
        counted_again = do_record_tracking_event_once(intervention, "clicked", "websocket", WITHIN)

    assert dropped is None
    assert flagged is not None
    assert flagged.duplicate
    assert counted_again is not None
    assert not counted_again.duplicate
    assert TrackingEvent.objects.filter(kind="clicked").count() == 3
    assert reads_of_tracking(first.captured_queries) == 1
    assert reads_of_tracking(later.captured_queries) == 1
