"""Rate limits on the public messaging entry points: provider webhooks and the help form."""

from __future__ import annotations

from messaging.models import Case, Message
from tests.messaging.conftest import (
    post_meta,
    post_twilio,
    sms_params,
    whatsapp_payload,
)

HELP_FORM = {
    "name": "Ana Lima",
    "email": "ana@example.com",
    "subject": "Wrong size",
    "description": "I got an L instead of an M.",
}


def test_sms_webhook_past_the_limit_is_a_plain_429_and_stores_nothing(world, client, settings):
    # given a limit of 2 deliveries a minute for one account and address
    settings.WEBHOOK_REQUESTS_PER_MINUTE = 2
    sms = world.sms

    responses = [
        post_twilio(client, sms, sms_params(sms, "+15551230001", f"text {n}", f"SM{n:032d}"))
        for n in range(3)
    ]

    assert [r.status_code for r in responses] == [200, 200, 429]
    throttled = responses[2]
    assert throttled["Content-Type"].startswith("text/plain")
    # the last window still weighs on the next: at most two windows to wait
    assert 1 <= int(throttled["Retry-After"]) <= 120
    assert Message.objects.filter(account=sms).count() == 2


def test_whatsapp_webhook_past_the_limit_is_a_json_429(world, client, settings):
    settings.WEBHOOK_REQUESTS_PER_MINUTE = 1
    wa = world.whatsapp

    first = post_meta(client, wa, whatsapp_payload(wa, "819012345678", "hello", "wamid.A1"))
    second = post_meta(client, wa, whatsapp_payload(wa, "819012345678", "again", "wamid.A2"))

    assert first.status_code == 200
    assert second.status_code == 429
    assert second.json() == {"detail": "Too many requests."}
    assert int(second["Retry-After"]) >= 1
    assert list(Message.objects.filter(account=wa).values_list("text", flat=True)) == ["hello"]


def test_other_accounts_are_not_throttled_by_one_accounts_flood(world, client, settings):
    settings.WEBHOOK_REQUESTS_PER_MINUTE = 1
    sms, wa = world.sms, world.whatsapp
    post_twilio(client, sms, sms_params(sms, "+15551230001", "one", "SM1"))
    assert (
        post_twilio(client, sms, sms_params(sms, "+15551230001", "two", "SM2")).status_code == 429
    )

    other = post_meta(client, wa, whatsapp_payload(wa, "819012345678", "hi", "wamid.B1"))

    assert other.status_code == 200


def test_help_form_refuses_cases_past_the_hourly_limit(world, client, settings):
    # given one address may open 3 cases an hour
    settings.HELP_CASES_PER_HOUR = 3

    responses = [client.post("/help/", HELP_FORM) for _ in range(5)]

    assert [r.status_code for r in responses] == [302, 302, 302, 429, 429]
    refused = responses[3]
    assert 1 <= int(refused["Retry-After"]) <= 2 * 3600
    assert "Too many requests from your address" in refused.content.decode()
    # the form keeps what the customer typed
    assert "I got an L instead of an M." in refused.content.decode()
    assert Case.objects.count() == 3


def test_help_form_limit_is_per_address(world, client, settings):
    settings.HELP_CASES_PER_HOUR = 1
    assert client.post("/help/", HELP_FORM, REMOTE_ADDR="203.0.113.1").status_code == 302
    assert client.post("/help/", HELP_FORM, REMOTE_ADDR="203.0.113.1").status_code == 429
    assert client.post("/help/", HELP_FORM, REMOTE_ADDR="203.0.113.2").status_code == 302
    assert Case.objects.count() == 2


def test_an_invalid_help_form_does_not_use_up_the_limit(world, client, settings):
    settings.HELP_CASES_PER_HOUR = 1
    assert client.post("/help/", {**HELP_FORM, "email": "not-an-address"}).status_code == 200
    assert client.post("/help/", HELP_FORM).status_code == 302
