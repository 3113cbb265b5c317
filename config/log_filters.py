"""Logging filters (wired in ``settings.LOGGING``); no Django imports, they load with it."""

import asyncio
import logging


class BenignPubSubCleanup(logging.Filter):
    """channels_redis logs, at error level with a traceback, every WebSocket disconnect
    whose unsubscribe was interrupted by the disconnect's own cancellation (1,541 lines in
    one load run). That CancelledError is the normal end of a connection; any other
    exception during the cleanup is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, asyncio.CancelledError)
