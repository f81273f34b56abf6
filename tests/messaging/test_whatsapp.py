"""WhatsApp Cloud API: verification handshake, signed notifications in, the messages API out."""

from __future__ import annotations

import json

import pytest
from celery.exceptions import Retry

from messaging import services
from messaging.models import Conversation, Customer, Message
from messaging.tasks import send_outbound
from routing import services as routing
from tests.messaging.conftest import post_meta, whatsapp_payload

WAMID = "wamid.HBgLMTU1NTEyMzAwMDEVAgASGBQzQTRCMjg5RjE1QUY4NjY0"


def _accepted(world, client):
    post_meta(client, world.whatsapp, whatsapp_payload(world.whatsapp, "15551230001", "Hi", WAMID))
    agent = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=agent.works.get().pk, agent=agent)
    return Conversation.objects.get(), agent


def test_verification_handshake_echoes_the_challenge(world, client):
    url = f"/webhooks/whatsapp/{world.whatsapp.pk}/"

    good = client.get(
        url,
        {"hub.mode": "subscribe", "hub.verify_token": "wa-verify", "hub.challenge": "1158201444"},
    )
    bad = client.get(
        url, {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1158201444"}
    )

    assert (good.status_code, good.content.decode()) == (200, "1158201444")
    assert bad.status_code == 403


def test_signed_message_is_stored_with_the_profile_name(world, client):
    response = post_meta(
        client, world.whatsapp, whatsapp_payload(world.whatsapp, "15551230001", "Hi there", WAMID)
    )

    assert response.status_code == 200
    message = Message.objects.get()
    assert (message.text, message.provider_message_id) == ("Hi there", WAMID)
    customer = message.conversation.customer
    assert customer.display_name == "Yuki Sato"
    assert [(i.kind, i.value) for i in customer.identities.all()] == [("whatsapp", "15551230001")]
    assert message.conversation.work_item.payload["customer"]["name"] == "Yuki Sato"


def test_bad_signature_is_403_and_nothing_is_stored(world, client):
    payload = whatsapp_payload(world.whatsapp, "15551230001", "Hi", WAMID)

    response = post_meta(client, world.whatsapp, payload, secret="wrong-secret")
    unsigned = client.post(
        f"/webhooks/whatsapp/{world.whatsapp.pk}/",
        data=json.dumps(payload),
        content_type="application/json",
    )

    assert (response.status_code, unsigned.status_code) == (403, 403)
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        {"object": "page", "entry": []},
        {"object": "whatsapp_business_account", "entry": "nope"},
        {
            "object": "whatsapp_business_account",
            "entry": [{"changes": [{"value": {"messages": [{"type": "text", "id": "w1"}]}}]}],
        },
    ],
)
def test_signed_malformed_payload_is_acknowledged_and_nothing_is_stored(world, client, body):
    response = post_meta(client, world.whatsapp, body)

    assert response.status_code == 200
    assert response.json()["received"] == 0
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0


def test_replayed_notification_is_stored_once(world, client):
    payload = whatsapp_payload(world.whatsapp, "15551230001", "Hi", WAMID)

    post_meta(client, world.whatsapp, payload)
    post_meta(client, world.whatsapp, payload)

    assert Message.objects.count() == 1


def test_reply_goes_to_the_messages_endpoint(world, client, fake_provider):
    conversation, agent = _accepted(world, client)
    fake_provider.default = lambda r: (
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": "15551230001", "wa_id": "15551230001"}],
            "messages": [{"id": "wamid.OUT1"}],
        },
    )

    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hello Yuki")
    assert send_outbound(reply.pk) == "sent"
    assert send_outbound(reply.pk) == "skipped"

    assert len(fake_provider.requests) == 1
    request = fake_provider.requests[0]
    assert (request.method, request.path) == ("POST", "/v21.0/106540352242922/messages")
    assert request.headers["authorization"] == "Bearer wa-access-token"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15551230001",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello Yuki"},
    }
    reply.refresh_from_db()
    assert (reply.status, reply.provider_message_id) == ("sent", "wamid.OUT1")


def test_status_notifications_update_delivery(world, client, fake_provider):
    conversation, agent = _accepted(world, client)
    fake_provider.default = lambda r: (200, {"messages": [{"id": "wamid.OUT2"}]})
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")
    send_outbound(reply.pk)

    def status_payload(status, **extra):
        return {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "102290129340398",
                    "changes": [
                        {
                            "field": "messages",
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {"phone_number_id": "106540352242922"},
                                "statuses": [
                                    {
                                        "id": "wamid.OUT2",
                                        "status": status,
                                        "timestamp": "1749416400",
                                        "recipient_id": "15551230001",
                                        **extra,
                                    }
                                ],
                            },
                        }
                    ],
                }
            ],
        }

    post_meta(client, world.whatsapp, status_payload("delivered"))
    reply.refresh_from_db()
    assert reply.status == "delivered"
    post_meta(client, world.whatsapp, status_payload("read"))
    reply.refresh_from_db()
    assert reply.status == "delivered"


def test_failed_status_shows_the_provider_error(world, client, fake_provider):
    conversation, agent = _accepted(world, client)
    fake_provider.default = lambda r: (200, {"messages": [{"id": "wamid.OUT3"}]})
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")
    send_outbound(reply.pk)
    payload = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "1",
                "changes": [
                    {
                        "value": {
                            "statuses": [
                                {
                                    "id": "wamid.OUT3",
                                    "status": "failed",
                                    "errors": [
                                        {
                                            "code": 131047,
                                            "title": "Re-engagement message",
                                            "error_data": {
                                                "details": "More than 24 hours have passed."
                                            },
                                        }
                                    ],
                                }
                            ]
                        }
                    }
                ],
            }
        ],
    }

    post_meta(client, world.whatsapp, payload)

    reply.refresh_from_db()
    assert (reply.status, reply.error) == (
        "failed",
        "More than 24 hours have passed. (code 131047)",
    )


def test_rate_limit_is_retried_then_succeeds(world, client, fake_provider):
    conversation, agent = _accepted(world, client)
    fake_provider.script = [
        (429, {"error": {"message": "Too many messages", "type": "OAuthException", "code": 130429}})
    ]
    fake_provider.default = lambda r: (200, {"messages": [{"id": "wamid.OUT4"}]})
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")

    with pytest.raises(Retry):
        send_outbound(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.error) == ("queued", "HTTP 429: Too many messages (code 130429)")

    assert send_outbound(reply.pk) == "sent"
    reply.refresh_from_db()
    assert (reply.status, reply.error, reply.attempts) == ("sent", "", 2)


def test_signed_payload_nested_deeper_than_the_parser_goes_is_acknowledged(world, client):
    body = b'{"object": "whatsapp_business_account", "entry": ' + b"[" * 5000 + b"]" * 5000 + b"}"

    response = post_meta(client, world.whatsapp, body)

    assert response.status_code == 200
    assert response.json()["received"] == 0
    assert Message.objects.count() == 0
