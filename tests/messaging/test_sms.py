"""SMS in Twilio's wire format: signed form webhooks in, the Messages REST API out."""

from __future__ import annotations

import base64
from urllib.parse import urlencode

import pytest
import requests
from celery.exceptions import Retry

from messaging import services
from messaging.models import Conversation, Customer, Message
from messaging.tasks import send_outbound
from routing import services as routing
from routing import tasks
from routing.models import WorkItem
from tests.harness import RedisServer, free_port, start_daphne
from tests.messaging.conftest import post_twilio, sms_params, twilio_signature

SID = "SM1f0e8ae6ade43cb3c0ce4525424e404f"


def _accepted_conversation(world, client, sender="+15551230001"):
    post_twilio(client, world.sms, sms_params(world.sms, sender, "Where is my parcel?", SID))
    agent = world.agent("alice")
    routing.route_waiting_work()
    work = agent.works.get()
    routing.accept_work(work_id=work.pk, agent=agent)
    return Conversation.objects.get(), agent


def test_signed_inbound_sms_is_stored_and_routed(world, client):
    # given a correctly signed Twilio webhook for a new number
    params = sms_params(world.sms, "+15551230001", "Where is my parcel?", SID)

    # when it arrives
    response = post_twilio(client, world.sms, params)

    # then the answer is empty TwiML and the message is stored on a new customer's conversation
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml"
    assert response.content.decode() == '<?xml version="1.0" encoding="UTF-8"?><Response/>'
    message = Message.objects.get()
    assert (message.text, message.provider_message_id, message.status) == (
        "Where is my parcel?",
        SID,
        "received",
    )
    conversation = message.conversation
    assert conversation.identity.kind == "phone"
    assert conversation.identity.value == "+15551230001"
    # and, with no bot on this account, it waits for an agent on the messaging channel
    assert conversation.status == "waiting"
    item = conversation.work_item
    assert (item.queue, item.channel, item.status) == (world.queue, world.messaging, "waiting")
    assert item.payload["channel"] == "sms"
    assert item.payload["first_message"] == "Where is my parcel?"
    assert item.record == conversation


def test_bad_signature_is_refused_and_nothing_is_stored(world, client):
    params = sms_params(world.sms, "+15551230001", "Hello", SID)

    response = post_twilio(client, world.sms, params, token="not-the-auth-token")

    assert response.status_code == 403
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0
    assert WorkItem.objects.count() == 0


def test_tampered_body_is_refused(world, client):
    # given a signature made for one body, sent with another
    params = sms_params(world.sms, "+15551230001", "Hello", SID)
    path = f"/webhooks/sms/{world.sms.pk}/"
    signature = twilio_signature(world.sms.auth_token, f"http://testserver{path}", params)
    tampered = {**params, "Body": "Send me a refund"}

    response = client.post(
        path,
        data=urlencode(tampered),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=signature,
    )

    assert response.status_code == 403
    assert Message.objects.count() == 0


def test_replayed_delivery_is_stored_once(world, client):
    params = sms_params(world.sms, "+15551230001", "Hello", SID)

    first = post_twilio(client, world.sms, params)
    second = post_twilio(client, world.sms, params)

    assert (first.status_code, second.status_code) == (200, 200)
    assert Message.objects.count() == 1
    assert WorkItem.objects.count() == 1


def test_signed_malformed_payload_is_acknowledged_and_nothing_is_stored(world, client):
    # Retrying can never make it valid: answered so Twilio stops, logged, nothing stored.
    params = {"AccountSid": world.sms.account_sid, "From": "+15551230001", "Body": "No sid"}

    response = post_twilio(client, world.sms, params)

    assert response.status_code == 200
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [("From", "+1" + "5" * 400), ("From", "+1555\x000001"), ("MessageSid", "SM" + "x" * 300)],
)
def test_signed_sms_with_unstorable_identifier_is_acknowledged_not_500(world, client, field, value):
    params = {
        "AccountSid": world.sms.account_sid,
        "MessageSid": "SMpoison",
        "From": "+15551230001",
        "Body": "hello",
    }
    params[field] = value

    response = post_twilio(client, world.sms, params)

    assert response.status_code == 200
    assert Message.objects.count() == 0
    assert Customer.objects.count() == 0


def test_nul_byte_in_sms_text_is_replaced_and_the_message_arrives(world, client):
    params = {
        "AccountSid": world.sms.account_sid,
        "MessageSid": "SMnul",
        "From": "+15551230001",
        "Body": "hel\x00lo",
    }

    response = post_twilio(client, world.sms, params)

    assert response.status_code == 200
    assert Message.objects.get().text == "hel\ufffdlo"


def test_reply_is_sent_through_the_messages_api(world, client, fake_provider):
    # given an accepted SMS conversation and a provider that accepts messages
    conversation, agent = _accepted_conversation(world, client)
    fake_provider.default = lambda r: (201, {"sid": "SMaaaa0000", "status": "queued"})

    # when the agent replies and the task runs (twice: a redelivered task)
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="On its way!")
    assert reply.status == "queued"
    assert send_outbound(reply.pk) == "sent"
    assert send_outbound(reply.pk) == "skipped"

    # then exactly one Twilio-shaped request was made
    assert len(fake_provider.requests) == 1
    request = fake_provider.requests[0]
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{world.sms.account_sid}/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected_auth = base64.b64encode(
        f"{world.sms.account_sid}:{world.sms.auth_token}".encode()
    ).decode()
    assert request.headers["authorization"] == f"Basic {expected_auth}"
    assert request.form() == {
        "To": ["+15551230001"],
        "From": ["+15005550006"],
        "Body": ["On its way!"],
    }
    reply.refresh_from_db()
    assert (reply.status, reply.provider_message_id, reply.attempts) == ("sent", "SMaaaa0000", 1)


def test_status_callbacks_update_delivery(world, client, fake_provider):
    conversation, agent = _accepted_conversation(world, client)
    fake_provider.default = lambda r: (201, {"sid": "SMbbbb1111", "status": "queued"})
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")
    send_outbound(reply.pk)
    callback = {
        "MessageSid": "SMbbbb1111",
        "AccountSid": world.sms.account_sid,
        "MessageStatus": "delivered",
        "From": world.sms.phone_number,
        "To": "+15551230001",
    }

    response = post_twilio(client, world.sms, callback)

    assert response.status_code == 200
    reply.refresh_from_db()
    assert reply.status == "delivered"
    assert reply.delivered_at is not None
    # an older status arriving late does not move it back
    post_twilio(client, world.sms, {**callback, "MessageStatus": "sent"})
    reply.refresh_from_db()
    assert reply.status == "delivered"


def test_undelivered_callback_shows_the_error(world, client, fake_provider):
    conversation, agent = _accepted_conversation(world, client)
    fake_provider.default = lambda r: (201, {"sid": "SMcccc2222", "status": "queued"})
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")
    send_outbound(reply.pk)

    post_twilio(
        client,
        world.sms,
        {
            "MessageSid": "SMcccc2222",
            "AccountSid": world.sms.account_sid,
            "MessageStatus": "undelivered",
            "ErrorCode": "30003",
            "ErrorMessage": "Unreachable destination handset",
        },
    )

    reply.refresh_from_db()
    assert (reply.status, reply.error) == ("failed", "Unreachable destination handset")


def test_provider_errors_are_retried_with_backoff_then_fail(world, client, fake_provider):
    # given a provider that keeps failing with 500 (max 3 attempts in this world)
    conversation, agent = _accepted_conversation(world, client)
    fake_provider.default = lambda r: (
        500,
        {"code": 20500, "message": "Internal Server Error", "status": 500},
    )
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")

    # when the task runs: the first two attempts ask Celery to retry, 2 s then 4 s later
    delays = []
    for _ in range(2):
        with pytest.raises(Retry):
            send_outbound(reply.pk)
        reply.refresh_from_db()
        assert reply.status == "queued"
        delays.append((reply.next_attempt_at - reply.last_attempt_at).total_seconds())
    assert delays == [2.0, 4.0]
    assert reply.error == "HTTP 500: Internal Server Error (code 20500)"

    # then the third attempt gives up and the failure shows on the message
    assert send_outbound(reply.pk) == "failed"
    reply.refresh_from_db()
    assert (reply.status, reply.attempts) == ("failed", 3)
    assert reply.error == "HTTP 500: Internal Server Error (code 20500)"
    assert len(fake_provider.requests) == 3
    assert send_outbound(reply.pk) == "skipped"
    assert len(fake_provider.requests) == 3


def test_permanent_provider_error_fails_at_once(world, client, fake_provider):
    conversation, agent = _accepted_conversation(world, client)
    fake_provider.script = [
        (400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})
    ]
    reply = services.send_reply(conversation_id=conversation.pk, agent=agent, text="Hi")

    assert send_outbound(reply.pk) == "failed"

    reply.refresh_from_db()
    assert reply.status == "failed"
    assert reply.error == "HTTP 400: The 'To' number is not a valid phone number. (code 21211)"
    assert len(fake_provider.requests) == 1


def test_unknown_account_is_404(world, client):
    response = client.post("/webhooks/sms/999999/", data={"MessageSid": SID})

    assert response.status_code == 404


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_stored_webhook_answers_200_while_redis_is_down(world, service_env, tmp_path):
    # Given daphne on a Redis of its own, and that Redis dead
    redis_server = RedisServer(port=free_port(), workdir=tmp_path)
    redis_server.start()
    env = {
        k: v
        for k, v in service_env.items()
        if k not in ("CELERY_BROKER_URL", "CHANNEL_LAYER_REDIS_URL")
    }
    env["REDIS_URL"] = redis_server.url
    web, base = start_daphne(env, tmp_path / "daphne.log")
    agent = world.agent("alice")
    try:
        redis_server.stop()
        params = sms_params(world.sms, "+15551230001", "Where is my parcel?", SID)
        url = f"{base}/webhooks/sms/{world.sms.pk}/"

        # When Twilio delivers an SMS
        response = requests.post(
            url,
            data=params,
            headers={"X-Twilio-Signature": twilio_signature(world.sms.auth_token, url, params)},
            timeout=30,
        )

        # Then it is stored and acknowledged (Twilio does not retry it)
        assert response.status_code == 200
        item = WorkItem.objects.get()
        assert item.status == "waiting"
        assert Message.objects.get().text == "Where is my parcel?"
        # and once Redis is back, the sweep routes it
        redis_server.start()
        tasks.sweep()
        assert agent.works.get().item == item
    finally:
        web.stop()
        redis_server.stop()
