"""Real-time delivery over WebSocket (docs/websocket-protocol.md).

- ``consumers``: the store and user rooms (authenticate, join, forward; adapters);
- ``acks``: batches clients' acks into ``interventions.actions.do_acknowledge_many``;
- ``views``: room tokens, the live connections listing, the demo storefront;
- ``tokens``: short-lived signed tokens a browser connects with (it never holds the API key);
- ``registry``: who is connected, per store, in Redis (limits, ``is_connected``);
- ``replay``: one Redis Stream per room, whose entry ids are the frames' ``messageId``;
- ``transport`` and ``publish``: persist-then-publish of an ``intervention`` frame;
- ``frames``: the one builder of that frame's payload;
- ``protocol``: frame shapes, validation and the close-code table.
"""
