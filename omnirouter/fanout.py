"""Group sends for ``realtime``: many at once, in order, off the caller's thread.

A routing batch of 1,000 offers publishes about 2,000 events (the offer and the agent's new load,
per agent). ``group_send`` one by one costs a thread hop for ``async_to_sync`` and three or four
Redis round trips each, seconds per batch. With channels-redis this module does the same work in
two round trips per Redis host: one script reads the members of every group (dropping expired
members, as ``group_send`` does), one script appends every message to every member channel
(dropping expired messages and respecting channel capacity, as ``group_send`` does). Messages
are serialized by the layer itself, so consumers receive exactly what ``group_send`` delivers,
in publication order. Other layers (the in-memory one of the embedded run) get their own
``group_send``, all in one event loop.

With channels-redis the sends leave from one event loop in a daemon thread per process, in the
order they were handed over: a routing batch does not wait for Redis (nor pay for a new event
loop and connection per ``async_to_sync`` call), and the next batch starts at once. Pushes are
hints after commit either way; the database is the truth.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
from collections import defaultdict
from typing import Any

from asgiref.sync import async_to_sync

from omnirouter import nudges

logger = logging.getLogger(__name__)

# KEYS: group keys; ARGV[1]: members added before this time have expired. Returns each group's
# member channel names.
_READ_GROUPS = """
local found = {}
for i = 1, #KEYS do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, ARGV[1])
    found[i] = redis.call('ZRANGE', KEYS[i], 0, -1)
end
return found
"""

# KEYS: channel keys, one per message (a key may repeat). ARGV: the serialized messages, then
# each key's capacity, then each message's score (send order), then the expiry cutoff and the
# expiry in seconds. Returns how many messages were dropped for channels at capacity.
_SEND = """
local n = #KEYS
local cutoff = ARGV[3 * n + 1]
local expiry = ARGV[3 * n + 2]
local over_capacity = 0
local cleaned = {}
for i = 1, n do
    local key = KEYS[i]
    if not cleaned[key] then
        redis.call('ZREMRANGEBYSCORE', key, 0, cutoff)
        cleaned[key] = true
    end
    if redis.call('ZCOUNT', key, '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', key, ARGV[2 * n + i], ARGV[i])
        redis.call('EXPIRE', key, expiry)
    else
        over_capacity = over_capacity + 1
    end
end
return over_capacity
"""


async def group_send_many(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Send each ``(group, message)``, in order; the semantics of ``layer.group_send``."""
    if not _is_redis_layer(layer):
        for group, message in messages:
            await layer.group_send(group, message)
        return
    members = await _read_groups(layer, {group for group, _ in messages})
    # Per Redis host: (channel key, serialized message, capacity) in publication order.
    sends: dict[int, list[tuple[str, bytes, int]]] = defaultdict(list)
    for group, message in messages:
        channels = members.get(group)
        if not channels:
            continue
        by_connection, payloads, capacities = layer._map_channel_keys_to_connection(
            channels, message
        )
        for index, keys in by_connection.items():
            sends[index].extend((key, payloads[key], capacities[key]) for key in keys)
    for index, entries in sends.items():
        await _send(layer, index, entries)


def send(layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Hand ``messages`` over for sending; never raises (a push is only a hint)."""
    try:
        if _is_redis_layer(layer):
            _sender.submit(layer, messages)
        else:
            # The in-memory layer belongs to the caller's event loop: send from here.
            async_to_sync(group_send_many)(layer, messages)
    except Exception:
        nudges.failed(nudges.REALTIME)


def flush(timeout: float = 5.0) -> bool:
    """Wait until everything handed over so far has been sent (tests, shutdown)."""
    return _sender.flush(timeout)


class _Sender:
    """One event loop in a daemon thread that sends what it is handed, first in, first out."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[Any, list[tuple[str, dict[str, Any]]]]] | None = None

    def submit(self, layer: Any, messages: list[tuple[str, dict[str, Any]]]) -> None:
        loop, queue = self._running()
        loop.call_soon_threadsafe(queue.put_nowait, (layer, messages))

    def flush(self, timeout: float) -> bool:
        with self._lock:
            if self._pid != os.getpid() or self._loop is None or self._queue is None:
                return True
            loop, queue = self._loop, self._queue
        future = asyncio.run_coroutine_threadsafe(queue.join(), loop)
        try:
            future.result(timeout)
        except TimeoutError:
            return False
        return True

    def _running(self) -> tuple[asyncio.AbstractEventLoop, asyncio.Queue]:
        with self._lock:
            # A forked child (a Celery pool process) has the object but not the thread.
            if self._pid != os.getpid() or self._loop is None or self._queue is None:
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(ready,), name="realtime-sender", daemon=True
                )
                thread.start()
                ready.wait()
                self._pid = os.getpid()
            assert self._loop is not None
            assert self._queue is not None
            return self._loop, self._queue

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._queue = asyncio.Queue()
        ready.set()
        loop.run_until_complete(self._drain(self._queue))

    @staticmethod
    async def _drain(queue: asyncio.Queue) -> None:
        while True:
            layer, messages = await queue.get()
            try:
                await group_send_many(layer, messages)
            except Exception:
                nudges.failed(nudges.REALTIME)
            finally:
                queue.task_done()


_sender = _Sender()
# Messages handed over just before a process exits still leave (within reason).
atexit.register(flush, 2.0)


def _is_redis_layer(layer: Any) -> bool:
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - channels-redis is a dependency
        return False
    # Exactly this class: a subclass (the pub/sub layer, a sharded variant) may store differently.
    return type(layer) is RedisChannelLayer


async def _read_groups(layer: Any, groups: set[str]) -> dict[str, list[str]]:
    by_connection: dict[int, list[str]] = defaultdict(list)
    for group in sorted(groups):
        assert layer.require_valid_group_name(group), "Group name not valid"
        by_connection[layer.consistent_hash(group)].append(group)
    cutoff = int(time.time()) - layer.group_expiry
    members: dict[str, list[str]] = {}
    for index, names in by_connection.items():
        keys = [layer._group_key(name) for name in names]
        found = await layer.connection(index).eval(_READ_GROUPS, len(keys), *keys, cutoff)
        for name, channels in zip(names, found, strict=True):
            members[name] = [c.decode("utf8") for c in channels]
    return members


async def _send(layer: Any, index: int, entries: list[tuple[str, bytes, int]]) -> None:
    now = time.time()
    keys = [key for key, _, _ in entries]
    # Distinct, increasing scores keep publication order: members with equal scores would come
    # out in the (random) byte order of their serialized form.
    scores = [now + n * 1e-5 for n in range(len(entries))]
    args = [payload for _, payload, _ in entries] + [capacity for _, _, capacity in entries]
    args += scores + [int(now) - int(layer.expiry), layer.expiry]
    dropped = await layer.connection(index).eval(_SEND, len(keys), *keys, *args)
    if dropped:
        logger.info("realtime: %s of %s messages dropped: channels at capacity", dropped, len(keys))
