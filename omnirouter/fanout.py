"""Many group sends at once, for ``realtime.publish_many``.

A routing batch of 1,000 offers publishes about 2,000 events (the offer and the agent's new load,
per agent). ``group_send`` one by one costs a thread hop for ``async_to_sync`` and three or four
Redis round trips each, seconds per batch. With channels-redis this module does the same work in
two round trips per Redis host: one script reads the members of every group (dropping expired
members, as ``group_send`` does), one script appends every message to every member channel
(dropping expired messages and respecting channel capacity, as ``group_send`` does). Messages
are serialized by the layer itself, so consumers receive exactly what ``group_send`` delivers,
in publication order. Other layers (the in-memory one of the embedded run) get their own
``group_send``, all in one event loop.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from typing import Any

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
