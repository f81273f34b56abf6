"""The agent console's WebSocket, through the real ASGI application (origin check, session auth).

Each test sets data up synchronously through the services, then runs the socket conversation in
an event loop (``talk``), then checks the database. The channel layer is the in-memory one, fresh
for every test; routing passes are run by hand (ROUTING_MODE=manual).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from omnirouter import realtime
from omnirouter.asgi import application
from presence.models import Agent
from routing import services
from routing.models import AgentSkill, AgentWork, ItemSkill, Skill, WorkItem
from routing.selectors import presence_payloads, with_item_skills, work_payload
from routing.services.skills import need
from tests.factories import enqueue

pytestmark = pytest.mark.django_db(transaction=True)

# The production layer (channels-redis on REDIS_URL), before the fixture below swaps it out.
REDIS_CHANNEL_LAYERS = django_settings.CHANNEL_LAYERS


@pytest.fixture(autouse=True)
def _in_memory_layer_and_manual_routing(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.ROUTING_MODE = "manual"


# --- Helpers -----------------------------------------------------------------------------------


def console(user=None, *, origin: str = "http://localhost", language: str | None = None):
    """A WebSocket client for /ws/agent/ carrying ``user``'s session cookie, as a browser would."""
    headers = [(b"origin", origin.encode()), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    if language:
        headers.append((b"accept-language", language.encode()))
    return WebsocketCommunicator(application, "/ws/agent/", headers=headers)


def talk(conversation: Callable[[], Awaitable[Any]]) -> Any:
    """Run an async conversation with the consumer from a synchronous test."""
    return async_to_sync(conversation)()


async def open_console(ws: WebsocketCommunicator) -> dict[str, Any]:
    connected, _ = await ws.connect(timeout=5)
    assert connected
    state = await ws.receive_json_from(timeout=5)
    assert state["type"] == "state"
    return state


async def next_of(ws: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    """The next frame of type ``kind``, skipping others (events may interleave with answers)."""
    for _ in range(20):
        frame = await ws.receive_json_from(timeout=5)
        if frame["type"] == kind:
            return frame
    raise AssertionError(f"no {kind} frame")


def go_online(center, agent: Agent, status=None) -> Agent:
    services.set_presence(agent=agent, status=status or center.available)
    services.touch_console(agent=agent)
    agent.refresh_from_db()
    return agent


def offer(center, agent: Agent, subject: str = "Where is my order?") -> AgentWork:
    """A pushed offer of a new chat item to ``agent`` (a supervisor pushes it to them)."""
    go_online(center, agent)
    item = enqueue(
        center.support, center.chat, subject, payload={"customer": {"name": "Yuki Sato"}}
    )
    return services.push_item_to_agent(item_id=item.pk, agent=agent, actor=center.supervisor)


def accepted(center, agent: Agent, subject: str = "Refund please") -> AgentWork:
    work = offer(center, agent, subject)
    return services.accept_work(work_id=work.pk, agent=agent)


def snapshot() -> list[tuple]:
    """Every agent work and item state: to show a refused request wrote nothing."""
    works = list(AgentWork.objects.order_by("id").values_list("id", "state", "decline_reason"))
    items = list(WorkItem.objects.order_by("id").values_list("id", "status", "queue_id"))
    agents = list(Agent.objects.order_by("id").values_list("id", "status_id", "used_capacity"))
    return [works, items, agents]


# --- Authentication and origin -----------------------------------------------------------------


def test_anonymous_connection_is_closed_with_4401(center):
    ws = console(None)

    async def conversation():
        connected, _ = await ws.connect(timeout=5)
        closed = await ws.receive_output(timeout=5)
        return connected, closed

    connected, closed = talk(conversation)

    assert connected is True  # accepted only to say why it closes
    assert closed == {"type": "websocket.close", "code": 4401}


def test_a_user_who_is_not_an_agent_is_closed_with_4403(center):
    ws = console(center.supervisor)

    async def conversation():
        await ws.connect(timeout=5)
        return await ws.receive_output(timeout=5)

    assert talk(conversation) == {"type": "websocket.close", "code": 4403}


def test_a_foreign_origin_is_refused_before_the_consumer_runs(center):
    ws = console(center.alice.user, origin="https://evil.example")
    before = Agent.objects.get(pk=center.alice.pk).console_seen_at

    async def conversation():
        return await ws.connect(timeout=5)

    connected, code = talk(conversation)

    assert (connected, code) == (False, 1000)
    assert Agent.objects.get(pk=center.alice.pk).console_seen_at == before


def test_a_connection_without_an_origin_header_is_refused(center):
    # given a client that sends no Origin header at all (not a browser page of ours)
    client = Client()
    client.force_login(center.alice.user)
    cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    ws = WebsocketCommunicator(
        application,
        "/ws/agent/",
        headers=[(b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode())],
    )

    async def conversation():
        return await ws.connect(timeout=5)

    connected, _ = talk(conversation)

    assert connected is False


# --- The state frame ---------------------------------------------------------------------------


def test_the_first_frame_is_the_full_state_with_only_the_agents_own_work(center):
    # given alice holds an offer and an accepted item, and bob holds an offer of his own
    alice_open = accepted(center, center.alice, "Refund please")
    alice_offer = offer(center, center.alice, "Where is my order?")
    offer(center, center.bob, "Bob's customer")
    # and her console was last seen a minute ago
    Agent.objects.filter(pk=center.alice.pk).update(
        console_seen_at=timezone.now() - timedelta(minutes=1)
    )
    ws = console(center.alice.user)
    before = timezone.now()

    # when alice's console connects
    async def conversation():
        state = await open_console(ws)
        await ws.disconnect()
        return state

    state = talk(conversation)

    # then the state has exactly her two works, oldest first, and her configuration's choices
    works = [AgentWork.objects.get(pk=w.pk) for w in (alice_open, alice_offer)]
    assert [w["id"] for w in state["work"]] == [alice_open.pk, alice_offer.pk]
    assert state["work"] == [work_payload(with_item_skills(w)) for w in works]
    assert state["work"][0]["skills"] == []
    assert state["work"][1]["payload"] == {"customer": {"name": "Yuki Sato"}}
    assert [s["name"] for s in state["statuses"]] == [
        "Offline",
        "Available",
        "Available - Chat",
        "Busy",
    ]
    assert state["statuses"][0] == {"id": None, "name": "Offline", "online": False, "channels": []}
    assert state["statuses"][1]["channels"] == ["Case", "Chat"]
    assert state["decline_reasons"] == ["Going on break", "Wrong skill"]
    assert state["require_decline_reason"] is True
    assert state["allow_decline"] is True
    assert state["queues"] == [
        {"id": center.billing.pk, "name": "Billing"},
        {"id": center.support.pk, "name": "Support"},
    ]
    assert state["presence"] == presence_payloads([center.alice.pk])[center.alice.pk]
    assert state["presence"]["used_capacity"] == 2
    assert state["heartbeat_seconds"] == django_settings.CONSOLE_HEARTBEAT_SECONDS
    assert state["agent"] == {"id": center.alice.pk, "name": "alice"}
    assert datetime.fromisoformat(state["now"]) >= before
    # and connecting marked her console alive
    assert Agent.objects.get(pk=center.alice.pk).console_seen_at >= before


def test_the_state_speaks_the_browsers_language(center):
    ws = console(center.alice.user, language="ja,en;q=0.5")

    async def conversation():
        state = await open_console(ws)
        await ws.send_json_to({"type": "dance", "ref": 1})
        error = await next_of(ws, "error")
        await ws.disconnect()
        return state, error

    state, error = talk(conversation)

    assert state["statuses"][0]["name"] == "オフライン"
    assert error["message"] == '不明なメッセージ種別です: "dance"。'


# --- Pushed events -----------------------------------------------------------------------------


def test_an_offer_routed_to_the_agent_appears_on_the_console(center):
    # given alice online with her console open, bob offline
    go_online(center, center.alice)
    ws = console(center.alice.user)
    item = {}

    def route_new_item():
        item["item"] = enqueue(
            center.support,
            center.chat,
            "Cannot log in",
            priority=3,
            payload={"customer": {"name": "Hiro Tanaka"}},
        )
        services.route_waiting_work()

    # when an item is enqueued and a routing pass runs
    async def conversation():
        await open_console(ws)
        await database_sync_to_async(route_new_item)()
        offered = await next_of(ws, "offer")
        presence = await next_of(ws, "presence.changed")
        await ws.disconnect()
        return offered, presence

    offered, presence = talk(conversation)

    # then the console gets the offer as the database has it, and her new load
    work = AgentWork.objects.get(item=item["item"])
    assert work.agent_id == center.alice.pk
    assert offered == {"type": "offer", "payload": work_payload(work)}
    assert offered["payload"]["payload"] == {"customer": {"name": "Hiro Tanaka"}}
    assert presence["payload"]["used_capacity"] == 1


def test_a_routed_offer_shows_the_skills_it_needs_and_the_note_it_was_handed_on_with(center):
    # given alice, who speaks Japanese, online with her console open
    japanese = Skill.objects.create(name="Japanese")
    AgentSkill.objects.create(agent=center.alice, skill=japanese, level=Decimal("4"))
    go_online(center, center.alice)
    ws = console(center.alice.user)
    item = {}

    def route_handed_on_item():
        # an item a colleague handed on to anyone with Japanese, with a note
        item["item"] = enqueue(
            center.support, center.chat, "Refund in yen", skills=[need(japanese.pk, 3)]
        )
        WorkItem.objects.filter(pk=item["item"].pk).update(
            transfer_from="bob", transfer_note="Customer prefers Japanese."
        )
        services.route_waiting_work()

    async def conversation():
        await open_console(ws)
        await database_sync_to_async(route_handed_on_item)()
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return offered

    offered = talk(conversation)

    # then the offer itself (not only a later resync) says what the item needs and the note
    work = with_item_skills(AgentWork.objects.get(item=item["item"]))
    assert offered["payload"] == work_payload(work)
    assert offered["payload"]["skills"] == [
        {"skill_id": japanese.pk, "name": "Japanese", "min_level": "3.00", "additional": False}
    ]
    assert offered["payload"]["transfer"] == {"from": "bob", "note": "Customer prefers Japanese."}


def test_events_of_other_agents_never_reach_the_console(center):
    go_online(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await database_sync_to_async(offer)(center, center.bob, "Bob's item")
        nothing = await ws.receive_nothing(timeout=0.5)
        await ws.disconnect()
        return nothing

    assert talk(conversation) is True


# --- Actions -----------------------------------------------------------------------------------


def test_accept_over_the_socket_opens_the_offer(center):
    pushed = offer(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to({"type": "accept", "work_id": pushed.pk, "ref": "a1"})
        ack = await next_of(ws, "ack")
        changed = await next_of(ws, "work.changed")
        await ws.disconnect()
        return ack, changed

    ack, changed = talk(conversation)

    work = AgentWork.objects.get(pk=pushed.pk)
    assert work.state == "opened"
    assert work.item.status == "assigned"
    assert ack == {
        "type": "ack",
        "ref": "a1",
        "action": "accept",
        "work": work_payload(with_item_skills(work)),
    }
    assert changed["payload"]["state"] == "opened"


def test_a_second_accept_is_refused_and_changes_nothing(center):
    work = accepted(center, center.alice)
    ws = console(center.alice.user)
    before = snapshot()

    async def conversation():
        await open_console(ws)
        await ws.send_json_to({"type": "accept", "work_id": work.pk, "ref": 7})
        error = await next_of(ws, "error")
        await ws.disconnect()
        return error

    error = talk(conversation)

    assert error == {
        "type": "error",
        "ref": 7,
        "code": "already_accepted",
        "message": "You have already accepted this work.",
    }
    assert snapshot() == before


def test_decline_with_a_listed_reason_returns_the_item_to_the_queue(center):
    pushed = offer(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(
            {"type": "decline", "work_id": pushed.pk, "reason": "Wrong skill", "ref": "d"}
        )
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return ack

    ack = talk(conversation)

    work = AgentWork.objects.get(pk=pushed.pk)
    assert (work.state, work.decline_reason) == ("declined", "Wrong skill")
    assert work.item.status == "waiting"
    assert Agent.objects.get(pk=center.alice.pk).used_capacity == 0
    assert ack == {"type": "ack", "ref": "d", "action": "decline", "work": work_payload(work)}


@pytest.mark.parametrize(
    ("reason", "code"),
    [("", "reason_required"), ("Retired reason", "reason"), ("I just don't want to", "reason")],
)
def test_decline_without_an_allowed_reason_is_refused(center, reason, code):
    pushed = offer(center, center.alice)
    ws = console(center.alice.user)
    before = snapshot()

    async def conversation():
        await open_console(ws)
        await ws.send_json_to({"type": "decline", "work_id": pushed.pk, "reason": reason})
        error = await next_of(ws, "error")
        await ws.disconnect()
        return error

    error = talk(conversation)

    assert (error["code"], error["ref"]) == (code, None)
    assert snapshot() == before


def test_close_with_a_note_ends_the_work_and_frees_capacity(center):
    work = accepted(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(
            {"type": "close", "work_id": work.pk, "note": "Refund issued", "ref": "c"}
        )
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return ack

    ack = talk(conversation)

    closed = AgentWork.objects.get(pk=work.pk)
    assert (closed.state, closed.end_note) == ("closed", "Refund issued")
    assert closed.item.status == "closed"
    assert Agent.objects.get(pk=center.alice.pk).used_capacity == 0
    assert ack["work"] == work_payload(closed)


def test_transfer_puts_the_item_in_the_other_queue(center):
    work = accepted(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(
            {"type": "transfer", "work_id": work.pk, "queue": center.billing.pk, "ref": "t"}
        )
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return ack

    ack = talk(conversation)

    moved = AgentWork.objects.get(pk=work.pk)
    assert (moved.state, moved.end_note) == ("transferred", "To Billing")
    assert (moved.item.status, moved.item.queue_id) == ("waiting", center.billing.pk)
    assert ack["work"]["state"] == "transferred"


def test_transfer_to_a_colleague_who_cannot_take_it_is_an_error_frame(center):
    work = accepted(center, center.alice)
    ws = console(center.alice.user)  # bob is offline
    before = snapshot()

    async def conversation():
        state = await open_console(ws)
        await ws.send_json_to(
            {"type": "transfer", "work_id": work.pk, "agent": center.bob.pk, "ref": "t"}
        )
        error = await next_of(ws, "error")
        await ws.disconnect()
        return state, error

    state, error = talk(conversation)

    assert state["colleagues"] == [
        {"id": center.bob.pk, "name": "bob", "queue_ids": [center.support.pk, center.billing.pk]}
    ]
    assert error == {
        "type": "error",
        "ref": "t",
        "code": "offline",
        "message": "bob cannot take this item: offline.",
    }
    assert snapshot() == before


def test_transfer_to_a_colleague_offers_it_to_them_with_the_note(center):
    work = accepted(center, center.alice)
    go_online(center, center.bob)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(
            {
                "type": "transfer",
                "work_id": work.pk,
                "agent": center.bob.pk,
                "note": "Card refund",
                "ref": "t",
            }
        )
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return ack

    ack = talk(conversation)

    assert ack["work"]["state"] == "transferred"
    bobs = AgentWork.objects.get(item_id=work.item_id, agent=center.bob)
    assert bobs.state == "pushed"
    assert work_payload(bobs)["transfer"] == {"from": "alice", "note": "Card refund"}


def test_transfer_to_anyone_with_a_skill_requires_it(center):
    japanese = Skill.objects.create(name="Japanese")
    work = accepted(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(
            {"type": "transfer", "work_id": work.pk, "skill": japanese.pk, "min_level": 2.5}
        )
        ack = await next_of(ws, "ack")
        await ws.send_json_to(
            {"type": "transfer", "work_id": work.pk, "skill": japanese.pk, "min_level": "lots"}
        )
        error = await next_of(ws, "error")
        await ws.disconnect()
        return ack, error

    ack, error = talk(conversation)

    assert ack["work"]["state"] == "transferred"
    assert list(ItemSkill.objects.values_list("skill_id", "min_level")) == [
        (japanese.pk, Decimal("2.50"))
    ]
    assert error["code"] == "skills"
    assert WorkItem.objects.get(pk=work.item_id).status == "waiting"


def test_status_changes_go_through_the_configuration(center):
    go_online(center, center.alice, center.busy)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_json_to({"type": "status", "status": center.chat_only.pk, "ref": 1})
        ack = await next_of(ws, "ack")
        await ws.send_json_to({"type": "status", "status": center.lunch.pk, "ref": 2})
        refused = await next_of(ws, "error")
        await ws.send_json_to({"type": "status", "status": None, "ref": 3})
        offline = await next_of(ws, "ack")
        await ws.disconnect()
        return ack, refused, offline

    ack, refused, offline = talk(conversation)

    assert ack["presence"]["status"] == "Available - Chat"
    assert ack["presence"]["online"] is True
    assert (refused["ref"], refused["code"]) == (2, "status")
    assert offline["presence"]["status_id"] is None
    assert Agent.objects.get(pk=center.alice.pk).status_id is None


def test_sync_sends_the_full_state_again(center):
    ws = console(center.alice.user)

    def later_offer():
        return offer(center, center.alice, "Arrived meanwhile").pk

    async def conversation():
        first = await open_console(ws)
        work_id = await database_sync_to_async(later_offer)()
        await ws.send_json_to({"type": "sync", "ref": "s"})
        again = await next_of(ws, "state")
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return first, again, ack, work_id

    first, again, ack, work_id = talk(conversation)

    assert first["work"] == []
    assert [w["id"] for w in again["work"]] == [work_id]
    assert ack == {"type": "ack", "ref": "s", "action": "sync"}


# --- Permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["accept", "decline", "close", "transfer"])
def test_acting_on_another_agents_work_is_refused_and_changes_nothing(center, action):
    bobs_offer = offer(center, center.bob, "Bob's offer")
    bobs_open = accepted(center, center.bob, "Bob's open work")
    target = bobs_open if action in ("close", "transfer") else bobs_offer
    ws = console(center.alice.user)
    before = snapshot()
    message = {
        "type": action,
        "work_id": target.pk,
        "reason": "Wrong skill",
        "note": "mine now",
        "queue": center.billing.pk,
        "ref": "x",
    }

    async def conversation():
        await open_console(ws)
        await ws.send_json_to(message)
        error = await next_of(ws, "error")
        await ws.disconnect()
        return error

    error = talk(conversation)

    assert error == {
        "type": "error",
        "ref": "x",
        "code": "not_found",
        "message": f"No work {target.pk} of yours.",
    }
    assert snapshot() == before


# --- Malformed input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("frame", "code", "message"),
    [
        ('{"type": "dance", "ref": "m"}', "unknown_type", 'Unknown message type "dance".'),
        ('{"ref": "m"}', "unknown_type", "Unknown message type null."),
        ('["accept", 1]', "bad_request", "A message must be a JSON object with a type."),
        ("not json", "bad_json", "Messages must be JSON text."),
        ('{"type": "accept", "ref": "m"}', "bad_request", "Field work_id is required."),
        (
            '{"type": "accept", "work_id": "12", "ref": "m"}',
            "bad_request",
            "Field work_id must be an integer id.",
        ),
        (
            '{"type": "accept", "work_id": true, "ref": "m"}',
            "bad_request",
            "Field work_id must be an integer id.",
        ),
        (
            '{"type": "accept", "work_id": 1.5, "ref": "m"}',
            "bad_request",
            "Field work_id must be an integer id.",
        ),
        (
            '{"type": "decline", "work_id": 1, "reason": 5, "ref": "m"}',
            "bad_request",
            "Field reason must be text.",
        ),
        (
            '{"type": "close", "work_id": 1, "note": "' + "x" * 5001 + '", "ref": "m"}',
            "bad_request",
            "Field note is too long (at most 5000 characters).",
        ),
        (
            '{"type": "transfer", "work_id": 1, "ref": "m"}',
            "bad_request",
            "Field queue is required.",
        ),
        (
            '{"type": "transfer", "work_id": 1, "queue": 999999, "ref": "m"}',
            "not_found",
            "No queue 999999.",
        ),
        ('{"type": "status", "ref": "m"}', "bad_request", "Field status is required."),
        ('{"type": "status", "status": 999999, "ref": "m"}', "not_found", "No status 999999."),
        (
            '{"type": "close", "work_id": 1, "note": "done\\u0000", "ref": "m"}',
            "bad_input",
            "note: A text value contains a NUL byte.",
        ),
        (
            '{"type": "decline", "work_id": 1, "reason": "\\u0000", "ref": "m"}',
            "bad_input",
            "reason: A text value contains a NUL byte.",
        ),
        ("[" * 5000 + "]" * 5000, "bad_input", "(body): Nested deeper than 32 levels."),
        (
            '{"type": "close", "work_id": 1, "note": ' + "[" * 40 + "]" * 40 + "}",
            "bad_input",
            "note" + ".0" * 31 + ": Nested deeper than 32 levels.",
        ),
    ],
)
def test_malformed_messages_get_an_error_frame_and_change_nothing(center, frame, code, message):
    work = accepted(center, center.alice)
    ws = console(center.alice.user)
    before = snapshot()
    frame = frame.replace('"work_id": 1,', f'"work_id": {work.pk},')

    async def conversation():
        await open_console(ws)
        await ws.send_to(text_data=frame)
        error = await next_of(ws, "error")
        # the connection survives a bad message
        await ws.send_json_to({"type": "heartbeat", "ref": "still-there"})
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return error, ack

    error, ack = talk(conversation)

    assert (error["code"], error["message"]) == (code, message)
    # A frame refused before it is read has no ref; the others answer the frame's own.
    assert error["ref"] == (None if frame.startswith(("[", "not")) or code == "bad_input" else "m")
    assert ack["ref"] == "still-there"
    assert snapshot() == before


def test_binary_frames_are_refused(center):
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.send_to(bytes_data=b'{"type": "heartbeat"}')
        error = await next_of(ws, "error")
        await ws.disconnect()
        return error

    assert talk(conversation)["code"] == "bad_json"


# --- Liveness ----------------------------------------------------------------------------------


def test_heartbeat_marks_the_console_alive_and_tells_the_server_time(center):
    long_ago = timezone.now() - timedelta(minutes=5)
    ws = console(center.alice.user)
    sent_at = {}

    def age_the_console():
        # As if the last heartbeat were long ago (a heartbeat never moves the time back).
        Agent.objects.filter(pk=center.alice.pk).update(console_seen_at=long_ago)
        sent_at["t"] = timezone.now()

    async def conversation():
        await open_console(ws)
        await database_sync_to_async(age_the_console)()
        await ws.send_json_to({"type": "heartbeat", "ref": "hb"})
        ack = await next_of(ws, "ack")
        await ws.disconnect()
        return ack

    ack = talk(conversation)

    seen = Agent.objects.get(pk=center.alice.pk).console_seen_at
    assert seen >= sent_at["t"]
    assert ack["ref"] == "hb"
    assert datetime.fromisoformat(ack["now"]) >= sent_at["t"]


def test_a_lost_console_keeps_the_agent_online_until_the_grace_period_ends(center):
    # given alice available with an accepted item and an offer, her console open
    kept = accepted(center, center.alice, "Kept")
    pending = offer(center, center.alice, "Pending")
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await ws.disconnect()

    # when the connection is lost
    talk(conversation)
    disconnected_at = timezone.now()

    # then nothing changes at once (a reload must not cost her the offer)
    services.sweep(now=disconnected_at)
    assert Agent.objects.get(pk=center.alice.pk).status_id == center.available.pk
    assert AgentWork.objects.get(pk=pending.pk).state == "pushed"

    # and once the grace period is over (allowing for the stored time's lag behind the last
    # heartbeat: a heartbeat within the write interval writes nothing), the sweep sets her
    # offline and takes the offer back
    grace = django_settings.CONSOLE_GRACE_SECONDS
    lag = django_settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS
    assert services.sweep(now=disconnected_at + timedelta(seconds=grace))["offline"] == 0
    result = services.sweep(now=disconnected_at + timedelta(seconds=grace + lag + 1))

    alice = Agent.objects.get(pk=center.alice.pk)
    assert result["offline"] == 1
    assert alice.status_id is None
    assert AgentWork.objects.get(pk=pending.pk).state == "canceled"
    assert WorkItem.objects.get(pk=pending.item_id).status == "waiting"
    assert AgentWork.objects.get(pk=kept.pk).state == "opened"
    assert alice.used_capacity == kept.units


def test_only_agents_with_an_open_console_are_routed_to(center):
    # given alice is available but has never opened her console
    services.set_presence(agent=center.alice, status=center.available)
    item = enqueue(center.support, center.chat, "Needs someone")
    services.route_waiting_work()
    assert WorkItem.objects.get(pk=item.pk).status == "waiting"
    ws = console(center.alice.user)

    # when she opens it, the next pass offers her the item
    async def conversation():
        await open_console(ws)
        await database_sync_to_async(services.route_waiting_work)()
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return offered

    offered = talk(conversation)

    assert offered["payload"]["item_id"] == item.pk
    assert WorkItem.objects.get(pk=item.pk).status == "offered"


def test_two_consoles_of_one_agent_stay_consistent(center):
    pushed = offer(center, center.alice)
    first, second = console(center.alice.user), console(center.alice.user)

    async def conversation():
        await open_console(first)
        await open_console(second)
        await first.send_json_to({"type": "accept", "work_id": pushed.pk, "ref": 1})
        await next_of(first, "ack")
        seen_elsewhere = await next_of(second, "work.changed")
        await first.disconnect()
        await second.disconnect()
        return seen_elsewhere

    seen = talk(conversation)

    assert (seen["payload"]["id"], seen["payload"]["state"]) == (pushed.pk, "opened")


def test_an_idle_console_on_the_redis_layer_still_receives_pushes(center, settings):
    # given the production channel layer, and a console that hears nothing for a while (longer
    # than channels-redis's 5 s blocking wait for the next message)
    assert REDIS_CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.core.RedisChannelLayer"
    settings.CHANNEL_LAYERS = REDIS_CHANNEL_LAYERS
    go_online(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await asyncio.sleep(7)
        work = await database_sync_to_async(offer)(center, center.alice, "After a quiet spell")
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return work, offered

    # when an offer is published after the quiet spell
    work, offered = talk(conversation)

    # then the same connection receives it
    assert offered["payload"]["id"] == work.pk


# --- Group membership that heals (channels-redis forgets members) -----------------------------


async def flush_channel_layer() -> None:
    """What a Redis FLUSHALL or a restart without persistence does to the channel layer."""
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(REDIS_CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def until_the_console_hears_its_group(ws: WebsocketCommunicator, agent: Agent) -> None:
    """Publish a probe to the agent's group until the console forwards one (at most 10 s)."""
    layer = get_channel_layer()
    probe = {"type": "realtime.event", "event": "probe", "payload": {}}
    for _ in range(100):
        await layer.group_send(realtime.agent_group(agent.pk), probe)
        # (receive_nothing, not a timed-out receive: a timeout would cancel the consumer)
        if await ws.receive_nothing(timeout=0.1):
            continue
        assert (await ws.receive_json_from())["type"] == "probe"
        # Probes sent before the one heard may still be on their way.
        while not await ws.receive_nothing(timeout=0.2):
            assert (await ws.receive_json_from())["type"] == "probe"
        return
    raise AssertionError("the console never heard its group again")


def test_a_console_hears_offers_again_after_the_channel_layer_was_flushed(center, settings):
    # given the production channel layer, consoles re-joining their groups every 0.2 s, and
    # alice's console open
    settings.CHANNEL_LAYERS = REDIS_CHANNEL_LAYERS
    settings.REALTIME_GROUP_REJOIN_SECONDS = 0.2
    go_online(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        # when Redis forgets every group membership (FLUSHALL on the layer's database)
        await flush_channel_layer()
        # then within the re-join interval the console is in its group again
        await until_the_console_hears_its_group(ws, center.alice)
        # and the next offer reaches it
        work = await database_sync_to_async(offer)(center, center.alice, "After the flush")
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return work, offered

    work, offered = talk(conversation)

    assert (offered["payload"]["id"], offered["payload"]["subject"]) == (work.pk, "After the flush")


def test_a_console_stays_in_its_group_longer_than_the_layers_group_expiry(center, settings):
    # given a layer that forgets members 1 s after they joined, consoles re-joining every 0.2 s
    settings.CHANNEL_LAYERS = {
        "default": {
            **REDIS_CHANNEL_LAYERS["default"],
            "CONFIG": {**REDIS_CHANNEL_LAYERS["default"]["CONFIG"], "group_expiry": 1},
        }
    }
    settings.REALTIME_GROUP_REJOIN_SECONDS = 0.2
    go_online(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        # when the console has been connected for longer than the group expiry
        await asyncio.sleep(1.5)
        work = await database_sync_to_async(offer)(center, center.alice, "A day later")
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return work, offered

    work, offered = talk(conversation)

    # then it still receives offers (it would have been dropped from the group at 1 s)
    assert offered["payload"]["id"] == work.pk


def test_a_console_that_resyncs_after_a_flush_hears_the_next_offer_at_once(center, settings):
    # given the production layer, a re-join timer too slow to help, and alice's console open
    settings.CHANNEL_LAYERS = REDIS_CHANNEL_LAYERS
    settings.REALTIME_GROUP_REJOIN_SECONDS = 3600
    go_online(center, center.alice)
    ws = console(center.alice.user)

    async def conversation():
        await open_console(ws)
        await flush_channel_layer()
        # when the console resyncs (its page does every REALTIME_RESYNC_SECONDS)
        await ws.send_json_to({"type": "sync", "ref": "r"})
        state = await next_of(ws, "state")
        await next_of(ws, "ack")
        # then the next offer reaches it
        work = await database_sync_to_async(offer)(center, center.alice, "Right after a sync")
        offered = await next_of(ws, "offer")
        await ws.disconnect()
        return state, work, offered

    state, work, offered = talk(conversation)

    assert state["work"] == []
    assert offered["payload"]["id"] == work.pk
