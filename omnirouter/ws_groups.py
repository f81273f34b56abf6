"""Channel-layer group membership that heals: what every long-lived consumer uses to join groups.

A layer forgets a member ``group_expiry`` after it joined (channels-redis: 24 h by default), and
forgets every member when Redis is flushed or restarts without persistence. Either way the
consumer keeps its socket, keeps answering heartbeats, and silently hears nothing more: a 24/7
console goes deaf. So members re-join every ``REALTIME_GROUP_REJOIN_SECONDS`` (a ZADD and an
EXPIRE per group on Redis), and whenever the consumer asks (a client's resync). Re-joining a group
one is already in only refreshes its timestamp.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from channels.layers import BaseChannelLayer
from django.conf import settings

logger = logging.getLogger(__name__)


class GroupMembership:
    """The groups of one consumer, kept joined until ``leave()`` or the consumer's end."""

    def __init__(self, layer: BaseChannelLayer, channel_name: str) -> None:
        self.layer = layer
        self.channel_name = channel_name
        self.groups: list[str] = []
        self._keeper: asyncio.Task | None = None

    async def join(self, *groups: str) -> None:
        """Join ``groups`` now (errors propagate: the consumer cannot serve without them) and
        keep them joined from then on."""
        for group in groups:
            await self.layer.group_add(group, self.channel_name)
            if group not in self.groups:
                self.groups.append(group)
        if self._keeper is None:
            self._keeper = asyncio.create_task(self._keep_joined())
            # The consumer's own task runs its handlers; should it end without disconnect()
            # (an error in connect, a killed application instance), stop re-adding a dead channel.
            owner = asyncio.current_task()
            if owner is not None:
                owner.add_done_callback(lambda _task: self._stop())

    async def rejoin(self) -> None:
        """Join every group again; a layer that is down is logged and retried at the next turn."""
        for group in self.groups:
            try:
                await self.layer.group_add(group, self.channel_name)
            except Exception:
                logger.warning("could not re-join %s; retrying later", group, exc_info=True)

    async def leave(self) -> None:
        self._stop()
        for group in self.groups:
            with contextlib.suppress(Exception):  # the socket is gone either way
                await self.layer.group_discard(group, self.channel_name)
        self.groups = []

    async def _keep_joined(self) -> None:
        while True:
            await asyncio.sleep(settings.REALTIME_GROUP_REJOIN_SECONDS)
            await self.rejoin()

    def _stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
