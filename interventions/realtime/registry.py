"""Who is connected over WebSocket, per store (to be backed by Redis)."""


def is_connected(store_id: str, user_id: str) -> bool:
    """Whether the shopper has a live WebSocket connection on any server instance."""
    return False
