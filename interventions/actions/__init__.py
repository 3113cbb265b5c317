"""The intervention engine's operations: the only way in for views, tasks, consumers,
webhooks, the admin and other apps (docs/architecture.md).

``do_*`` change the database (and say so in the history); ``check_*`` validate first;
``access_*`` fetch through the store. Each module is what a reader looks for:

- ``facts``: what the decision is told (store rules, shopper reachability, cart, history);
- ``personalization``: the context every template renders from;
- ``deciding``: decide and render one intervention (shared by every intake);
- ``intake``: explicit triggers, single and batch side by side;
- ``campaign_sends``: a scheduled campaign's send to a chunk of its audience;
- ``events``: cart events and conversions (checkout events and reported orders);
- ``event_batches``: cart events in bulk, accepted as an enqueue, decided by workers in chunks;
- ``delivery``: dispatch, claim, send, record, fall back (single and bulk side by side);
- ``lifecycle``: cancel, edit, retry, delivered, failed after send;
- ``receipts``: providers' delivery reports;
- ``storefront``: WebSocket acks, tracking frames and resends on reconnect;
- ``periodic``: the due-time release and the sweeper;
- ``privacy``: erasing a shopper, exporting their data, pruning rows past retention.
"""

from interventions.actions.campaign_sends import ChunkResult, do_send_campaign_chunk
from interventions.actions.deciding import Outcome
from interventions.actions.delivery import (
    BatchDelivery,
    dispatch,
    do_deliver,
    do_deliver_many,
    retry_delay,
)
from interventions.actions.event_batches import (
    Accepted,
    check_accept_events,
    do_decide_events,
    do_redispatch_undecided,
)
from interventions.actions.events import (
    EventResult,
    check_accept_event,
    check_record_conversion,
    do_accept_event,
    do_convert_cart,
)
from interventions.actions.intake import (
    check_template,
    check_trigger_batch,
    check_trigger_intervention,
)
from interventions.actions.lifecycle import (
    do_cancel_intervention,
    do_fail_after_send,
    do_give_up,
    do_mark_delivered,
    do_mark_delivered_many,
    do_retry_failed,
    do_update_unsent,
)
from interventions.actions.periodic import do_release_due, do_sweep_stuck
from interventions.actions.privacy import do_erase_shopper, do_prune_expired, shopper_export
from interventions.actions.receipts import do_record_provider_event
from interventions.actions.storefront import (
    AckRequest,
    PendingFrame,
    do_acknowledge_many,
    do_record_shopper_tracking,
    pending_for_shopper,
    shoppers_with_pending,
)
from interventions.errors import InterventionConflict, TransientDeliveryError

__all__ = [
    "Accepted",
    "AckRequest",
    "BatchDelivery",
    "ChunkResult",
    "EventResult",
    "InterventionConflict",
    "Outcome",
    "PendingFrame",
    "TransientDeliveryError",
    "check_accept_event",
    "check_accept_events",
    "check_record_conversion",
    "check_template",
    "check_trigger_batch",
    "check_trigger_intervention",
    "dispatch",
    "do_accept_event",
    "do_acknowledge_many",
    "do_cancel_intervention",
    "do_convert_cart",
    "do_decide_events",
    "do_deliver",
    "do_deliver_many",
    "do_erase_shopper",
    "do_fail_after_send",
    "do_give_up",
    "do_mark_delivered",
    "do_mark_delivered_many",
    "do_prune_expired",
    "do_record_provider_event",
    "do_record_shopper_tracking",
    "do_redispatch_undecided",
    "do_release_due",
    "do_retry_failed",
    "do_send_campaign_chunk",
    "do_sweep_stuck",
    "do_update_unsent",
    "pending_for_shopper",
    "retry_delay",
    "shopper_export",
    "shoppers_with_pending",
]
