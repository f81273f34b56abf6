"""Messenger Platform: verification, signed page events in, the Send API out."""

from __future__ import annotations

import pytest
from celery.exceptions import Retry

from messaging import services
from messaging.models import Conversation, Customer, Message
from messaging.tasks import send_outbound
from routing import services as routing
from tests.messaging.conftest import messenger_payload, post_meta

PSID = "6783428516432901"
MID = "m_AG5Hz2Uq7tuwNEhXfYYKj8mJEM_QPpz5jdCK48PnKAjSdjfipqxqMvK8ma6AC8fplwlqLP_5cgXIbu7I3rBN0P"


def _accepted(world, client):
    post_meta(client, world.messenger, messenger_payload(world.messenger, PSID, "Hello", MID))
    agent = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=agent.works.get().pk, agent=agent)
    return Conversation.objects.get(), agent


def test_verification_handshake(world, client):
    url = f"/webhooks/messenger/{world.messenger.pk}/"

    good = client.get(
        url, {"hub.mode": "subscribe", "hub.verify_token": "fb-verify", "hub.challenge": "42"}
    )
    bad = client.get(
        url, {"hub.mode": "unsubscribe", "hub.verify_token": "fb-verify", "hub.challenge": "42"}
    )

    assert (good.status_code, good.content.decode()) == (200, "42")
    assert bad.status_code == 403


def test_signed_message_is_stored(world, client):
    response = post_meta(
        client, world.messenger, messenger_payload(world.messenger, PSID, "Hello", MID)
    )

    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.text, message.provider_message_id) == ("Hello", MID)
    identity = message.conversation.identity
    assert (identity.kind, identity.value) == ("messenger", PSID)
    assert message.conversation.work_item.payload["channel"] == "messenger"


def test_bad_signature_is_403_and_nothing_is_stored(world, client):
    response = post_meta(
        client, world.messenger, messenger_payload(world.messenger, PSID, "Hi", MID), secret="x"
    )

    assert response.status_code == 403
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        {"object": "whatsapp_business_account", "entry": []},
        {
            "object": "page",
            "entry": [{"id": "1234567890", "messaging": [{"message": {"text": "no sender"}}]}],
        },
    ],
)
def test_signed_malformed_payload_is_acknowledged(world, client, body):
    response = post_meta(client, world.messenger, body)

    assert response.status_code == 200
    assert response.json()["received"] == 0
    assert Message.objects.count() == 0


def test_replayed_event_is_stored_once_and_echoes_are_ignored(world, client):
    payload = messenger_payload(world.messenger, PSID, "Hello", MID)
    echo = messenger_payload(world.messenger, world.messenger.page_id, "Our reply", "m_echo")
    echo["entry"][0]["messaging"][0]["message"]["is_echo"] = True

    post_meta(client, world.messenger, payload)
    post_meta(client, world.messenger, payload)
    post_meta(client, world.messenger, echo)

    assert list(Message.objects.values_list("text", flat=True)) == ["Hello"]


def test_reply_goes_through_the_send_api_and_delivery_events_update_it(
    world, client, fake_provider
):
    conversation, agent = _accepted(world, client)
    fake_provider.script = [(503, {"error": {"message": "Service unavailable", "code": 2}})]
    fake_provider.default = lambda r: (200, {"recipient_id": PSID, "message_id": "m_OUT1"})
    reply = services.send_reply(
        conversation_id=conversation.pk, agent=agent, text="How can I help?"
    )

    with pytest.raises(Retry):
        send_outbound(reply.pk)
    assert send_outbound(reply.pk) == "sent"
    assert send_outbound(reply.pk) == "skipped"

    assert len(fake_provider.requests) == 2
    request = fake_provider.requests[-1]
    assert (request.method, request.path) == ("POST", "/v21.0/me/messages")
    assert request.query == {"access_token": ["fb-page-token"]}
    assert request.json() == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {"text": "How can I help?"},
    }
    delivery = {
        "object": "page",
        "entry": [
            {
                "id": world.messenger.page_id,
                "time": 1458668856463,
                "messaging": [
                    {
                        "sender": {"id": PSID},
                        "recipient": {"id": world.messenger.page_id},
                        "delivery": {"mids": ["m_OUT1"], "watermark": 1458668856253},
                    }
                ],
            }
        ],
    }
    post_meta(client, world.messenger, delivery)
    reply.refresh_from_db()
    assert (reply.status, reply.provider_message_id, reply.attempts) == ("delivered", "m_OUT1", 2)
