"""Request log lines name the caller's address as the proxies in front saw it."""

import logging

import pytest


def logged_addresses(caplog: pytest.LogCaptureFixture) -> set[str]:
    return {
        record.msg["ip"]
        for record in caplog.records
        if isinstance(record.msg, dict) and record.msg.get("event") == "request_finished"
    }


@pytest.mark.django_db
def test_a_client_cannot_put_an_address_of_its_choice_in_the_logs(client, caplog, settings):
    settings.NUM_PROXIES = 0  # clients connect directly: X-Forwarded-For is theirs to write

    with caplog.at_level(logging.INFO):
        client.get("/health", HTTP_X_FORWARDED_FOR="203.0.113.9", REMOTE_ADDR="198.51.100.4")

    assert logged_addresses(caplog) == {"198.51.100.4"}


@pytest.mark.django_db
def test_behind_a_proxy_the_address_it_saw_is_logged(client, caplog, settings):
    settings.NUM_PROXIES = 1

    with caplog.at_level(logging.INFO):
        client.get("/health", HTTP_X_FORWARDED_FOR="203.0.113.9, 192.0.2.7", REMOTE_ADDR="10.0.0.2")

    assert logged_addresses(caplog) == {"192.0.2.7"}
