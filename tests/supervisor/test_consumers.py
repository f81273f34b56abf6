"""The supervisor dashboard's WebSocket through the real ASGI application (origin check, session
auth), with the in-memory channel layer and routing passes run by hand.

Each test sets data up through the services, then talks to the socket in an event loop; events
come from the services themselves (after commit), as in production.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client

from omnirouter.asgi import application
from routing import services
from tests.factories import make_agent
from tests.supervisor.conftest import make_supervisor

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _in_memory_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    # Periodic refreshes would interleave with the frames under test: push them out of the way.
    settings.SUPERVISOR_REFRESH_SECONDS = 600
    settings.SUPERVISOR_SNAPSHOT_THROTTLE_SECONDS = 0.3


def dashboard(user=None) -> WebsocketCommunicator:
    """A WebSocket client for /ws/supervisor/ carrying ``user``'s session cookie."""
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/supervisor/", headers=headers)


def talk(conversation: Callable[[], Awaitable[Any]]) -> Any:
    return async_to_sync(conversation)()


async def first_snapshot(ws: WebsocketCommunicator) -> dict[str, Any]:
    connected, _ = await ws.connect(timeout=5)
    assert connected
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "snapshot"
    return frame["snapshot"]


def waiting_by_queue(snapshot: dict[str, Any]) -> dict[str, int]:
    return {q["name"]: q["waiting"] for q in snapshot["queues"]}


def test_anonymous_is_closed_with_4401(center):
    ws = dashboard(None)

    async def conversation():
        connected, _ = await ws.connect(timeout=5)
        return connected, await ws.receive_output(timeout=5)

    connected, closed = talk(conversation)

    assert connected is True  # accepted only to say why it closes
    assert (closed["type"], closed["code"]) == ("websocket.close", 4401)


def test_agent_is_closed_with_4403(center):
    agent = make_agent("ann", queues=[center.chat_queue], config=center.api_agents)
    ws = dashboard(agent.user)

    async def conversation():
        await ws.connect(timeout=5)
        return await ws.receive_output(timeout=5)

    closed = talk(conversation)

    assert (closed["type"], closed["code"]) == ("websocket.close", 4403)


def test_supervisor_gets_a_snapshot_of_their_queues_only(center, supervisor):
    services.enqueue_work(queue=center.chat_queue, channel=center.chat, subject="mine")
    services.enqueue_work(queue=center.other_queue, channel=center.chat, subject="not mine")
    make_agent("ann", queues=[center.chat_queue], config=center.api_agents)
    make_agent("cid", queues=[center.other_queue], config=center.api_agents)
    ws = dashboard(supervisor)

    async def conversation():
        snap = await first_snapshot(ws)
        await ws.disconnect()
        return snap

    snap = talk(conversation)

    assert waiting_by_queue(snap) == {"Cases": 0, "Chat": 1}
    assert [a["username"] for a in snap["agents"]] == ["ann"]
    assert [i["subject"] for i in snap["next_in_line"]] == ["mine"]


def test_event_on_a_supervised_queue_sends_a_fresh_snapshot(center, supervisor):
    ws = dashboard(supervisor)
    enqueue = database_sync_to_async(services.enqueue_work)

    async def conversation():
        await first_snapshot(ws)
        # an item in a queue the supervisor does not watch: no frame
        await enqueue(queue=center.other_queue, channel=center.chat, subject="elsewhere")
        quiet = await ws.receive_nothing(timeout=0.8)
        # an item in Chat: a snapshot showing it
        await enqueue(queue=center.chat_queue, channel=center.chat, subject="new chat")
        frame = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return quiet, frame

    quiet, frame = talk(conversation)

    assert quiet is True
    assert frame["type"] == "snapshot"
    assert waiting_by_queue(frame["snapshot"]) == {"Cases": 0, "Chat": 1}
    assert frame["snapshot"]["next_in_line"][0]["subject"] == "new chat"


def test_a_burst_of_events_is_coalesced_and_the_last_change_shows(center, supervisor):
    ws = dashboard(supervisor)

    def burst() -> None:
        for n in range(25):  # 25 commits, 25 queue.changed events
            services.enqueue_work(queue=center.chat_queue, channel=center.chat, subject=f"#{n}")

    async def conversation():
        await first_snapshot(ws)
        await database_sync_to_async(burst)()
        frames = []
        while True:
            frame = await ws.receive_json_from(timeout=5)
            frames.append(frame)
            if waiting_by_queue(frame["snapshot"])["Chat"] == 25:
                break
        after = await ws.receive_nothing(timeout=1.0)
        await ws.disconnect()
        return frames, after

    frames, nothing_after = talk(conversation)

    # far fewer frames than events, the last one shows every item, then silence
    assert 1 <= len(frames) < 25
    assert all(f["type"] == "snapshot" for f in frames)
    assert waiting_by_queue(frames[-1]["snapshot"])["Chat"] == 25
    assert nothing_after is True


def test_agent_presence_change_reaches_the_dashboard(center, supervisor):
    agent = make_agent("ann", queues=[center.chat_queue], config=center.api_agents)
    ws = dashboard(supervisor)

    async def conversation():
        before = await first_snapshot(ws)
        await database_sync_to_async(services.set_presence)(agent=agent, status=center.available)
        frame = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return before, frame["snapshot"]

    before, after = talk(conversation)

    assert (before["agents"][0]["status"], before["agents"][0]["has_room"]) == (None, False)
    assert (after["agents"][0]["status"], after["agents"][0]["has_room"]) == ("Available", True)


def test_unknown_client_message_gets_an_error_frame_and_refresh_a_snapshot(center, supervisor):
    ws = dashboard(supervisor)

    async def conversation():
        await first_snapshot(ws)
        await ws.send_to(text_data='{"type": "move"}')
        error = await ws.receive_json_from(timeout=5)
        await ws.send_json_to({"type": "refresh"})
        fresh = await ws.receive_json_from(timeout=5)
        await ws.disconnect()
        return error, fresh

    error, fresh = talk(conversation)

    assert error["type"] == "error"
    assert error["code"] == "unknown_type"
    assert fresh["type"] == "snapshot"


def test_supervisor_of_no_queue_sees_an_empty_dashboard(center):
    idle = make_supervisor("ida")
    ws = dashboard(idle)

    async def conversation():
        snap = await first_snapshot(ws)
        await ws.disconnect()
        return snap

    snap = talk(conversation)

    assert (snap["queues"], snap["agents"]) == ([], [])


def test_two_dashboards_of_one_view_both_see_a_change(center, supervisor):
    # given two dashboards of the same supervisor (they may share computed snapshots)
    first, second = dashboard(supervisor), dashboard(supervisor)

    async def conversation():
        await first_snapshot(first)
        await first_snapshot(second)
        await database_sync_to_async(services.enqueue_work)(
            queue=center.cases_queue, channel=center.chat, subject="for both"
        )
        seen = [await ws.receive_json_from(timeout=5) for ws in (first, second)]
        await first.disconnect()
        await second.disconnect()
        return seen

    seen = talk(conversation)

    assert [waiting_by_queue(f["snapshot"])["Cases"] for f in seen] == [1, 1]


def test_an_exception_rule_that_notifies_sends_an_alert_frame(center, supervisor):
    # given an item that waited 10 minutes in Chat and a rule that notifies after 5
    from datetime import timedelta

    from django.utils import timezone

    from routing.models import ExceptionRule

    item = services.enqueue_work(
        queue=center.chat_queue,
        channel=center.chat,
        subject="slow",
        now=timezone.now() - timedelta(minutes=10),
    )
    services.save_exception_rule(
        rule=ExceptionRule(),
        changes={
            "name": "Slow",
            "trigger": "waited",
            "threshold": 300,
            "actions": {"notify": True},
        },
    )
    ws = dashboard(supervisor)
    run = database_sync_to_async(services.run_exception_rules)

    async def conversation():
        await first_snapshot(ws)
        await run()
        # the alert comes before or after the snapshot the run's queue change asks for
        frames = [await ws.receive_json_from(timeout=5) for _ in range(2)]
        await ws.disconnect()
        return frames

    frames = talk(conversation)

    alerts = [f["alert"] for f in frames if f["type"] == "alert"]
    assert len(alerts) == 1
    assert (alerts[0]["queue_id"], alerts[0]["items"], alerts[0]["rule"]["name"]) == (
        center.chat_queue.pk,
        [item.pk],
        "Slow",
    )
