"""Group membership that heals: re-joins on a timer, survives a layer that is down, and stops
with its consumer."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from omnirouter.ws_groups import GroupMembership
from tests.harness import REPO_ROOT


async def _until(check, what: str) -> None:
    for _ in range(200):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_member_forgotten_by_the_layer_is_back_after_the_rejoin_interval(settings):
    settings.REALTIME_GROUP_REJOIN_SECONDS = 0.05
    layer = InMemoryChannelLayer()

    async def scenario():
        membership = GroupMembership(layer, "console!1")
        await membership.join("agent.1", "agent.1", "queue.2")
        layer.groups.clear()  # what a Redis FLUSHALL does to the groups
        await _until(lambda: set(layer.groups) == {"agent.1", "queue.2"}, "the re-join")
        await membership.leave()
        return membership.groups

    assert async_to_sync(scenario)() == []
    assert layer.groups == {}


def test_a_layer_that_is_down_is_logged_and_the_membership_keeps_trying(settings, caplog):
    settings.REALTIME_GROUP_REJOIN_SECONDS = 0.05

    class FlakyLayer(InMemoryChannelLayer):
        failures = 2

        async def group_add(self, group, channel):
            if self.failures and group in self.groups_seen:
                self.failures -= 1
                raise ConnectionError("Redis is down")
            self.groups_seen.add(group)
            await super().group_add(group, channel)

    layer = FlakyLayer()
    layer.groups_seen = set()

    async def scenario():
        membership = GroupMembership(layer, "console!1")
        await membership.join("agent.1")
        layer.groups.clear()
        await _until(lambda: "agent.1" in layer.groups, "the re-join after the failures")
        await membership.leave()

    with caplog.at_level(logging.WARNING, logger="omnirouter.ws_groups"):
        async_to_sync(scenario)()

    assert [r.getMessage() for r in caplog.records] == [
        "could not re-join agent.1; retrying later",
        "could not re-join agent.1; retrying later",
    ]


def test_re_joining_stops_when_the_consumer_ends_without_leaving(settings):
    settings.REALTIME_GROUP_REJOIN_SECONDS = 0.02
    layer = InMemoryChannelLayer()

    async def consumer():
        await GroupMembership(layer, "console!1").join("agent.1")
        # and it ends (an error, a killed application instance) without disconnect()

    async def scenario():
        await asyncio.create_task(consumer())
        layer.groups.clear()
        await asyncio.sleep(0.2)  # ten re-join intervals: any keeper still alive would re-join

    async_to_sync(scenario)()

    assert layer.groups == {}


@pytest.mark.parametrize(
    ("rejoin", "expiry", "starts"),
    [
        ("60", "86400", True),
        ("43200", "86400", True),
        ("43201", "86400", False),
        ("0", "60", False),
    ],
)
def test_the_rejoin_interval_must_be_well_under_the_group_expiry(rejoin, expiry, starts):
    env = {
        **os.environ,
        "REALTIME_GROUP_REJOIN_SECONDS": rejoin,
        "CHANNEL_LAYER_GROUP_EXPIRY_SECONDS": expiry,
    }
    result = subprocess.run(
        [sys.executable, "-c", "import omnirouter.settings"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert (result.returncode == 0) is starts, result.stderr
    if not starts:
        assert "REALTIME_GROUP_REJOIN_SECONDS must be positive and at most half" in result.stderr
