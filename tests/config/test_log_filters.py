"""channels_redis's cleanup noise on every disconnect is dropped; real errors are not."""

import asyncio
import logging

import pytest


def log_cleanup_failure(error: BaseException) -> None:
    logger = logging.getLogger("channels_redis.pubsub")
    try:
        raise error
    except BaseException:
        logger.exception("Unexpected exception while cleaning-up channel:")


def test_a_cancelled_unsubscribe_on_disconnect_is_not_logged(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.ERROR, logger="channels_redis.pubsub"):
        log_cleanup_failure(asyncio.CancelledError())

    assert [r for r in caplog.records if r.name == "channels_redis.pubsub"] == []


def test_a_real_cleanup_error_is_still_logged(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.ERROR, logger="channels_redis.pubsub"):
        log_cleanup_failure(ConnectionResetError("redis went away"))

    assert [r.levelname for r in caplog.records if r.name == "channels_redis.pubsub"] == ["ERROR"]
