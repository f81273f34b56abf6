"""The supervisor dashboard's WebSocket (``/ws/supervisor/``): live snapshots, throttled.

On connect: authenticate (else close 4401), check the role (supervisor or admin, else close
4403), join the group of every queue the user supervises, send a full snapshot. Then a fresh
snapshot follows every ``queue.changed`` event, throttled per connection: at most one per
``SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS``, sent on the trailing edge so the last change always
shows. A burst of routing events (a pass that makes a thousand offers) thus costs one snapshot
per interval, not one per event. Every ``SUPERVISOR_REFRESH_SECONDS`` a snapshot is sent anyway,
so wait times keep growing and anything a dropped message missed is corrected.

The cost stays bounded when the center is big: the interval stretches to four times the time
the last snapshot took (a dashboard spends at most a quarter of its time on queries), and
dashboards in one process with the same view (same queues, same language: all admins, for a
start) share a snapshot computed less than one throttle interval ago, and only if it was
computed after the last event the dashboard heard of (so sharing never hides a change).

Why throttled snapshots and not deltas: a snapshot is a fixed number of aggregate queries, the
figures (averages, service level, longest wait) are not additive from events anyway, and a lost
message costs nothing because the next snapshot carries the whole truth. The protocol is in
docs/websocket-protocol.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from omnirouter import metrics, realtime, roles
from omnirouter.ws_frames import CheckedJsonConsumer
from omnirouter.ws_groups import GroupMembership
from omnirouter.ws_locale import language_of
from routing.selectors import supervised_queues
from supervisor.selectors import build_snapshot, scope_for

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_A_SUPERVISOR = 4403


class SupervisorConsumer(CheckedJsonConsumer):
    membership: GroupMembership | None = None

    async def connect(self) -> None:
        self._sender: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._dirty = False
        self._last_sent = 0.0
        self._interval = settings.SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS
        self._heard_at = 0.0  # time.monotonic() of the last queue event
        user = self.scope.get("user")
        # Accept, then close with a code: a refusal before accept reaches the browser as a bare
        # 1006, and the page could not tell "log in again" from "network trouble".
        if user is None or not user.is_authenticated:
            await self.accept()
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        queue_ids = await database_sync_to_async(_supervised_queue_ids)(user)
        if queue_ids is None:
            await self.accept()
            await self.close(code=CLOSE_NOT_A_SUPERVISOR)
            return
        self.user = user
        self.language = language_of(self.scope)
        # Join before the first snapshot: an event in between then triggers a second snapshot
        # instead of being lost.
        self.membership = GroupMembership(self.channel_layer, self.channel_name)
        await self.membership.join(*(realtime.queue_group(queue_id) for queue_id in queue_ids))
        await self.accept()
        metrics.socket_opened(self)
        await self._send_snapshot()
        self._ticker = asyncio.create_task(self._refresh_periodically())

    async def disconnect(self, code: int) -> None:
        metrics.socket_closed(self)
        for task in (self._ticker, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self.membership is not None:
            await self.membership.leave()

    # --- Server -> client -------------------------------------------------------------------

    async def realtime_event(self, message: dict[str, Any]) -> None:
        if message.get("event") == realtime.QUEUE_CHANGED:
            self._heard_at = time.monotonic()
            self._request_snapshot()
        elif message.get("event") == realtime.QUEUE_ALERT:
            # An exception rule fired for items of a queue this supervisor watches.
            await self.send_json({"type": "alert", "alert": message.get("payload")})

    def _request_snapshot(self) -> None:
        """Ask for a snapshot soon; requests while one is pending coalesce into it."""
        self._dirty = True
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_when_due())

    async def _send_when_due(self) -> None:
        loop = asyncio.get_running_loop()
        # Loops while events keep arriving during the wait or the query: the trailing edge.
        while self._dirty:
            delay = self._last_sent + self._interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await self._send_snapshot()

    async def _send_snapshot(self) -> None:
        self._dirty = False
        loop = asyncio.get_running_loop()
        self._last_sent = started = loop.time()
        try:
            with translation.override(self.language):
                data = await database_sync_to_async(_snapshot)(
                    self.user, self.language, self._heard_at
                )
        except Exception:
            # The next event or tick retries; the page keeps its last figures meanwhile.
            logger.exception("supervisor socket: snapshot failed")
            return
        took = loop.time() - started
        self._interval = max(settings.SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS, 4 * took)
        await self.send_json({"type": "snapshot", "snapshot": data})

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(settings.SUPERVISOR_REFRESH_SECONDS)
            self._request_snapshot()

    # --- Client -> server -------------------------------------------------------------------

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "refresh":
            self._heard_at = time.monotonic()  # asked for now: nothing older will do
            self._request_snapshot()
            return
        await self.send_frame_error(
            "unknown_type",
            _(
                'The dashboard socket only accepts {"type": "refresh"}; actions go '
                "through the REST API."
            ),
        )


def _supervised_queue_ids(user: Any) -> list[int] | None:
    """The user's queue ids, or None when they are neither supervisor nor admin."""
    if not roles.is_supervisor(user):
        return None
    return list(supervised_queues(user).values_list("id", flat=True))


# (queue ids, sees all agents, language) -> (monotonic time computed, snapshot). Only read and
# written in database_sync_to_async's one thread, but locked anyway: it costs nothing.
_shared: dict[tuple, tuple[float, dict[str, Any]]] = {}
_shared_lock = threading.Lock()


def _snapshot(user: Any, language: str, heard_at: float) -> dict[str, Any]:
    """A snapshot for ``user``: a shared one if computed after ``heard_at`` (the last event this
    dashboard heard) and less than a throttle interval ago, else a new one."""
    # The scope is read afresh each time: a supervisor given a new queue sees its figures at
    # the next snapshot (its events follow after a reconnect).
    scope = scope_for(user)
    key = (tuple(scope.queue_ids), scope.all_agents, language)
    fresh_after = time.monotonic() - settings.SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS
    with _shared_lock:
        cached = _shared.get(key)
    if cached is not None and cached[0] >= max(fresh_after, heard_at):
        return cached[1]
    computed_at = time.monotonic()
    data = build_snapshot(scope, timezone.now())
    with _shared_lock:
        for stale in [k for k, (t, _d) in _shared.items() if t < fresh_after]:
            del _shared[stale]
        _shared[key] = (computed_at, data)
    return data
