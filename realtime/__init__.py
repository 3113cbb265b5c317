"""Real-time delivery over WebSocket (docs/websocket-protocol.md).

- ``tokens``: short-lived signed tokens a browser connects with (it never holds the API key);
- ``registry``: who is connected, per store, in Redis (limits, ``is_connected``);
- ``replay``: one Redis Stream per room, whose entry ids are the frames' ``messageId``;
- ``publish``: persist-then-publish of an ``intervention`` frame (used by the transport);
- ``protocol``: frame shapes, validation and the close-code table;
- ``actions``: what a client's ``ack`` / ``tracking`` frames do to the database.
"""
