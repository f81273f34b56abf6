"""What services publish, as consoles and dashboards would receive it.

``RecordingChannelLayer`` is the in-memory channel layer (the embedded run's) that also keeps the
(group, event type) of every group send, in order. ``tests.conftest.published`` installs it.
"""

from __future__ import annotations

from typing import Any

from channels.layers import InMemoryChannelLayer


class RecordingChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sent: list[tuple[str, str]] = []

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.sent.append((group, message["event"]))
        await super().group_send(group, message)
