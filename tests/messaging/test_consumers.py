"""The web-chat socket (customer side) and the agent's conversation socket."""

from __future__ import annotations

import asyncio

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from messaging import services
from messaging.models import Conversation
from omnirouter.asgi import application
from routing import services as routing

ORIGIN = "https://shop.example.com"


def _widget(world, origin=ORIGIN, visitor="", key=None):
    path = f"/ws/webchat/{key or world.webchat.public_key}/"
    if visitor:
        path += f"?visitor={visitor}"
    headers = [(b"host", b"support.example.com")]
    if origin:
        headers.append((b"origin", origin.encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def _until(communicator, wanted_type):
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == wanted_type:
            return frame


def test_unknown_account_and_foreign_origin_are_refused(world, transactional_db):
    async def scenario():
        unknown = _widget(world, key="no-such-key")
        connected, _ = await unknown.connect()
        assert connected
        assert (await unknown.receive_output())["code"] == 4404
        foreign = _widget(world, origin="https://evil.example.net")
        await foreign.connect()
        assert (await foreign.receive_output())["code"] == 4403
        missing = _widget(world, origin="")
        await missing.connect()
        assert (await missing.receive_output())["code"] == 4403

    asyncio.run(scenario())
    assert Conversation.objects.count() == 0


def test_visitor_chats_with_the_bot_then_an_agent(world, transactional_db):
    alice = world.agent("alice", first_name="Alice")

    async def scenario():
        widget = _widget(world)
        assert (await widget.connect())[0]
        hello = await widget.receive_json_from()
        assert hello["type"] == "hello"
        assert (hello["conversation"], hello["messages"]) == (None, [])
        token = hello["visitor"]

        await widget.send_json_to({"type": "message", "text": "Hello", "client_id": "c1"})
        ack = await _until(widget, "ack")
        assert (ack["client_id"], ack["message"]["text"]) == ("c1", "Hello")
        question = await _until(widget, "message.new")
        assert question["payload"]["text"] == "Hi! What's your name?"
        assert question["payload"]["author"] == "bot"

        await widget.send_json_to({"type": "message", "text": "Ana", "client_id": "c2"})
        topic = await _until(widget, "message.new")
        assert (topic["payload"]["text"], topic["payload"]["choices"]) == (
            "What can we help with?",
            ["Orders", "Billing"],
        )
        await widget.send_json_to({"type": "message", "text": "Billing", "client_id": "c3"})
        bye = await _until(widget, "message.new")
        assert bye["payload"]["text"] == "Thank you. An agent will be with you shortly."
        # a resend of an already stored frame (after a reconnect) is stored once
        await widget.send_json_to({"type": "message", "text": "Billing", "client_id": "c3"})
        await _until(widget, "ack")

        @database_sync_to_async
        def agent_takes_it():
            routing.route_waiting_work()
            work = alice.works.get()
            routing.accept_work(work_id=work.pk, agent=alice)
            conversation = Conversation.objects.get()
            services.send_reply(conversation_id=conversation.pk, agent=alice, text="Hi Ana!")
            return conversation

        conversation = await agent_takes_it()
        joined = await _until(widget, "message.new")
        assert joined["payload"]["text"] == "Alice has joined the chat."
        reply = await _until(widget, "message.new")
        assert (reply["payload"]["text"], reply["payload"]["author_name"]) == ("Hi Ana!", "Alice")
        await widget.send_json_to({"type": "seen", "ids": [reply["payload"]["id"]]})
        await widget.disconnect()

        # the same visitor coming back sees the conversation
        again = _widget(world, visitor=token)
        await again.connect()
        hello = await again.receive_json_from()
        assert hello["visitor"] == token
        assert hello["conversation"] == {"id": conversation.pk, "status": "active"}
        assert [m["text"] for m in hello["messages"]][-2:] == [
            "Alice has joined the chat.",
            "Hi Ana!",
        ]
        await again.disconnect()
        return conversation

    conversation = asyncio.run(scenario())
    texts = list(conversation.messages.values_list("author", "text"))
    assert texts == [
        ("customer", "Hello"),
        ("bot", "Hi! What's your name?"),
        ("customer", "Ana"),
        ("bot", "What can we help with?"),
        ("customer", "Billing"),
        ("bot", "Thank you. An agent will be with you shortly."),
        ("system", "Alice has joined the chat."),
        ("agent", "Hi Ana!"),
    ]
    assert conversation.messages.get(text="Hi Ana!").status == "delivered"
    assert conversation.customer.display_name == "Ana"
    assert conversation.work_item.payload["bot_answers"] == {"name": "Ana", "topic": "billing"}


def test_agent_socket_replies_and_gets_customer_messages(world, transactional_db, client):
    alice = world.agent("alice", first_name="Alice")
    world.webchat.bot_flow = []
    world.webchat.save()
    visitor = services.visitor_key("t" * 32)
    services.receive_webchat(account=world.webchat, visitor=visitor, text="Need help")
    routing.route_waiting_work()
    work = alice.works.get()
    routing.accept_work(work_id=work.pk, agent=alice)
    conversation = Conversation.objects.get()
    client.force_login(alice.user)
    cookie = client.cookies["sessionid"].value

    async def scenario():
        socket = WebsocketCommunicator(
            application,
            "/ws/agent/conversations/",
            headers=[
                (b"host", b"localhost"),
                (b"origin", b"http://localhost"),
                (b"cookie", f"sessionid={cookie}".encode()),
            ],
        )
        assert (await socket.connect())[0]
        assert (await socket.receive_json_from())["type"] == "hello"
        await socket.send_json_to(
            {"type": "reply", "conversation_id": conversation.pk, "text": "Hello!", "ref": 1}
        )
        ack = await _until(socket, "ack")
        assert ack["ref"] == 1
        await socket.send_json_to(
            {"type": "reply", "conversation_id": conversation.pk, "text": " ", "ref": 2}
        )
        error = await _until(socket, "error")
        assert (error["code"], error["message"], error["ref"]) == (
            "empty",
            "Write a message first.",
            2,
        )

        await database_sync_to_async(services.receive_webchat)(
            account=world.webchat, visitor=visitor, text="Thanks"
        )
        new = await _until(socket, "message.new")
        while new["payload"]["message"]["text"] != "Thanks":
            new = await _until(socket, "message.new")
        assert new["payload"]["conversation_id"] == conversation.pk
        await socket.send_json_to({"type": "close", "conversation_id": conversation.pk, "ref": 3})
        assert (await _until(socket, "ack"))["of"] == "close"
        await socket.disconnect()

    asyncio.run(scenario())
    conversation.refresh_from_db()
    assert (conversation.status, conversation.ended_by) == ("ended", "agent")
    work.refresh_from_db()
    assert work.state == "closed"


def test_widget_answers_bad_frames_with_an_error_and_stays_open(world, transactional_db):
    frames = [
        '{"type": "message", "text": "hi\\u0000", "client_id": "n1"}',
        "[" * 5000 + "]" * 5000,
        "not json",
    ]

    async def scenario():
        widget = _widget(world)
        assert (await widget.connect())[0]
        await _until(widget, "hello")
        errors = []
        for frame in frames:
            await widget.send_to(text_data=frame)
            errors.append(await _until(widget, "error"))
        await widget.send_json_to({"type": "message", "text": "Hello", "client_id": "ok"})
        ack = await _until(widget, "ack")
        await widget.disconnect()
        return errors, ack

    errors, ack = asyncio.run(scenario())

    assert [e["code"] for e in errors] == ["bad_input", "bad_input", "bad_json"]
    assert errors[0]["message"] == "text: A text value contains a NUL byte."
    assert ack["client_id"] == "ok"
    assert [m.text for m in services_messages()] == ["Hello"]


def services_messages():
    from messaging.models import Message

    return list(Message.objects.filter(author="customer").order_by("id"))


def test_a_token_the_server_did_not_issue_is_refused(world, transactional_db):
    # given a visitor who makes up a token (perhaps someone else's identity value)
    async def scenario():
        made_up = _widget(world, visitor="my-own-made-up-token-0123456789")
        assert (await made_up.connect())[0]
        error = await made_up.receive_json_from()
        closed = await made_up.receive_output()
        # when the widget reconnects without it, it gets a server-issued one that works
        fresh = _widget(world)
        await fresh.connect()
        hello = await fresh.receive_json_from()
        await fresh.disconnect()
        again = _widget(world, visitor=hello["visitor"])
        await again.connect()
        welcome_back = await again.receive_json_from()
        await again.disconnect()
        return error, closed, hello, welcome_back

    error, closed, hello, welcome_back = asyncio.run(scenario())
    assert (error["type"], error["code"]) == ("error", "visitor_unknown")
    assert closed == {"type": "websocket.close", "code": 4401}
    assert services.visitor_token_valid(hello["visitor"])
    assert (welcome_back["type"], welcome_back["visitor"]) == ("hello", hello["visitor"])
    assert Conversation.objects.count() == 0


def test_a_tampered_token_is_refused(world, transactional_db):
    token = services.issue_visitor_token()
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")

    async def scenario():
        widget = _widget(world, visitor=tampered)
        await widget.connect()
        error = await widget.receive_json_from()
        return error, await widget.receive_output()

    error, closed = asyncio.run(scenario())
    assert error["code"] == "visitor_unknown"
    assert closed["code"] == 4401


def test_frames_past_the_burst_get_an_error_and_the_socket_stays_open(
    world, transactional_db, settings
):
    # given a burst of 3 frames and a refill too slow to matter during the test
    settings.WEBCHAT_BURST_FRAMES = 3
    settings.WEBCHAT_FRAMES_PER_SECOND = 0.001
    world.webchat.bot_flow = []
    world.webchat.save()

    async def scenario():
        widget = _widget(world)
        await widget.connect()
        await widget.receive_json_from()  # hello
        answers = []
        for n in range(5):
            await widget.send_json_to({"type": "message", "text": f"m{n}", "client_id": f"c{n}"})
            answers.append(await _until_any(widget, {"ack", "error"}))
        # the socket is still open: it answers the next frame
        await widget.send_json_to({"type": "typing"})
        answers.append(await _until_any(widget, {"ack", "error"}))
        await widget.disconnect()
        return answers

    answers = asyncio.run(scenario())
    assert [a["type"] for a in answers] == ["ack", "ack", "ack", "error", "error", "error"]
    assert {a["code"] for a in answers[3:]} == {"rate_limited"}
    assert all(a["retry_after_seconds"] > 0 for a in answers[3:])
    conversation = Conversation.objects.get()
    customer_texts = conversation.messages.filter(author="customer").values_list("text", flat=True)
    assert list(customer_texts) == ["m0", "m1", "m2"]


async def _until_any(communicator, wanted_types):
    while True:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] in wanted_types:
            return frame
