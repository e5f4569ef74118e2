"""Best-effort sends to the Channels layer, for every app's live updates."""

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send `message` to a channel-layer group; log and carry on when the layer fails."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        # Push is best effort: heartbeats and resync bring clients back to
        # the database state, so a broken layer must not fail the write.
        logger.exception("channel-layer publish to %s failed", group)
