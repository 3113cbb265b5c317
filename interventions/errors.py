"""Errors the intervention actions raise for their callers to translate (API: 409, tasks: retry)."""


class InterventionConflict(Exception):
    """The request cannot apply to the intervention in its current state (HTTP 409)."""


class TransientDeliveryError(Exception):
    """The transport failed in a way worth retrying; the intervention is back in queued."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after
