"""Bulk group sends on the real Redis channel layer: what each member channel receives must be
what ``group_send`` one message at a time would deliver, in publication order."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.core import RedisChannelLayer
from django.conf import settings

from omnirouter import fanout


def _layer(**config) -> RedisChannelLayer:
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    return RedisChannelLayer(hosts=hosts, prefix="fanout-test", **config)


def _event(n: int) -> dict:
    return {"type": "realtime.event", "event": "offer", "payload": {"n": n, "text": "Café ☕"}}


async def _drain(layer: RedisChannelLayer, channel: str) -> list[dict]:
    got = []
    while True:
        try:
            got.append(await asyncio.wait_for(layer.receive(channel), 0.3))
        except TimeoutError:
            return got


def test_every_member_receives_its_groups_messages_in_order_and_empty_groups_cost_nothing():
    async def scenario():
        layer = _layer()
        alice = await layer.new_channel()  # process-local channels, as consumers have
        alice_tab2 = await layer.new_channel()
        bob = await layer.new_channel()
        await layer.group_add("agent.1", alice)
        await layer.group_add("agent.1", alice_tab2)
        await layer.group_add("agent.2", bob)

        await fanout.group_send_many(
            layer,
            [
                ("agent.1", _event(1)),
                ("agent.9", _event(2)),
                ("agent.2", _event(3)),
                ("agent.1", _event(4)),
                ("queue.5", _event(5)),
            ],
        )
        received = (
            await _drain(layer, alice),
            await _drain(layer, alice_tab2),
            await _drain(layer, bob),
        )
        await layer.flush()
        return received

    alice, alice_tab2, bob = asyncio.run(scenario())
    assert alice == [_event(1), _event(4)]
    assert alice_tab2 == [_event(1), _event(4)]
    assert bob == [_event(3)]


def test_a_channel_at_capacity_drops_the_overflow_like_group_send():
    async def scenario():
        layer = _layer(capacity=2)
        channel = await layer.new_channel()
        await layer.group_add("agent.1", channel)
        await fanout.group_send_many(layer, [("agent.1", _event(n)) for n in range(5)])
        got = await _drain(layer, channel)
        await layer.flush()
        return got

    assert asyncio.run(scenario()) == [_event(0), _event(1)]


def test_other_layers_get_their_own_group_send():
    from channels.layers import InMemoryChannelLayer

    async def scenario():
        layer = InMemoryChannelLayer()
        channel = await layer.new_channel()
        await layer.group_add("agent.1", channel)
        await fanout.group_send_many(layer, [("agent.1", _event(1)), ("agent.2", _event(2))])
        return await layer.receive(channel)

    assert asyncio.run(scenario()) == _event(1)


@pytest.fixture(autouse=True)
def _needs_redis():
    if not settings.REDIS_URL:
        pytest.fail("REDIS_URL is not set: run the tests with `./dev test`.", pytrace=False)
    yield
    import redis

    client = redis.Redis.from_url(settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
    keys = list(client.scan_iter("fanout-test*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_send_hands_over_without_waiting_and_keeps_the_order_of_calls():
    layer = _layer()

    async def setup():
        channel = await layer.new_channel()
        await layer.group_add("agent.1", channel)
        return channel

    channel = asyncio.run(setup())
    # Given two hand-overs from this thread (as two routing batches would make) ...
    fanout.send(layer, [("agent.1", _event(1)), ("agent.1", _event(2))])
    fanout.send(layer, [("agent.1", _event(3))])
    # ... when the background sender has sent them ...
    assert fanout.flush(5.0) is True

    # ... then the member got them all, in the order of the calls. (No layer.flush() here: it
    # would close the sender thread's connections from this test's event loop.)
    assert asyncio.run(_drain(layer, channel)) == [_event(1), _event(2), _event(3)]
