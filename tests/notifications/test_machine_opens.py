"""Opens an ESP attributes to a privacy proxy are recorded, flagged, and never counted as
human opens (docs/analytics.md). anymail does not normalize the flag; SendGrid sends it
as ``sg_machine_open``."""

import time

import pytest

from tests.notifications.conftest import anymail_post
from tests.notifications.test_email import trigger_email
from tracking.models import TrackingEvent
from tracking.rollups import do_refresh_recent_rollups

pytestmark = [
    pytest.mark.django_db(transaction=True),
    # anymail still parses SendGrid's webhooks but warns it no longer supports SendGrid.
    pytest.mark.filterwarnings("ignore::anymail.exceptions.AnymailNotSupportedWarning"),
]


def sendgrid_open(intervention, machine: bool) -> None:
    event = {
        "event": "open",
        "email": "sam@example.test",
        "timestamp": int(time.time()),
        "sg_event_id": f"ev-{machine}",
        "useragent": "Mozilla/5.0",
        # our custom arg, which SendGrid merges into the event
        "intervention_id": str(intervention.pk),
    }
    if machine:
        event["sg_machine_open"] = True
    assert anymail_post("sendgrid", [event]).status_code == 200


def opened_total(shop) -> int:
    do_refresh_recent_rollups()  # beat's recount: the analytics read rollups
    return shop.client.get("/api/v1/analytics/performance").json()["totals"]["opened"]


def test_a_proxy_open_is_kept_flagged_and_not_counted_until_a_person_opens(shop, http, settings):
    # given an email sent, the ESP being SendGrid for its webhooks
    intervention = trigger_email(shop, http)
    settings.EMAIL_ESP = "sendgrid"

    # when SendGrid reports a machine open
    sendgrid_open(intervention, machine=True)

    # then the open is recorded as a machine open and the figures count no open
    [open_row] = TrackingEvent.objects.filter(intervention=intervention, kind="opened")
    assert open_row.machine
    assert opened_total(shop) == 0

    # when a person opens it
    sendgrid_open(intervention, machine=False)

    # then it counts
    assert TrackingEvent.objects.filter(kind="opened", machine=False).count() == 1
    assert opened_total(shop) == 1
