"""Outbound sends in the embedded run: the loop sends what is due, woken by the send itself."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import services
from messaging.models import Conversation
from omnirouter import embedded, wakeup
from routing import services as routing
from tests.messaging.conftest import post_twilio, sms_params


@pytest.fixture
def embedded_loop(world, settings):
    """An embedded run whose scheduled jobs all ran at start (its clock at 0)."""
    settings.ROUTING_MODE = "embedded"
    loop = embedded.Loop(settings.CELERY_BEAT_SCHEDULE, now=0.0)
    loop.tick(0.0)
    wakeup.wait(0)
    yield loop
    wakeup.wait(0)


def _accepted(world, client):
    post_twilio(client, world.sms, sms_params(world.sms, "+15551230001", "Hi", "SM01"))
    alice = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    return Conversation.objects.get(), alice


def test_embedded_send_goes_out_at_once_without_a_maintenance_tick(
    world, client, fake_provider, embedded_loop, django_capture_on_commit_callbacks
):
    # given an agent holding an SMS conversation in the embedded run
    fake_provider.default = lambda r: (201, {"sid": "SMdd00", "status": "queued"})
    conversation, alice = _accepted(world, client)
    wakeup.wait(0)

    # when she replies (the commit wakes the loop)
    with django_capture_on_commit_callbacks(execute=True):
        message = services.send_reply(conversation_id=conversation.pk, agent=alice, text="On it")
    woken = wakeup.wait(0)

    # then the loop's next turn, with no scheduled job due, sends it
    assert woken == {wakeup.SENDS}
    assert embedded_loop.tick(0.1, woken) == [embedded.SENDS]
    message.refresh_from_db()
    assert (message.status, message.provider_message_id, message.attempts) == ("sent", "SMdd00", 1)
    assert [r.form()["Body"] for r in fake_provider.requests] == [["On it"]]


def test_due_sends_retry_when_their_next_attempt_is_due(world, client, fake_provider):
    # given a reply whose first attempt met a provider outage
    fake_provider.script = [(503, {"message": "Service unavailable"})]
    fake_provider.default = lambda r: (201, {"sid": "SMee11", "status": "queued"})
    conversation, alice = _accepted(world, client)
    now = timezone.now()
    message = services.send_reply(conversation_id=conversation.pk, agent=alice, text="Hi", now=now)
    assert services.deliver_due_outbound(now=now) == 0
    message.refresh_from_db()
    assert (message.status, message.next_attempt_at) == ("queued", now + timedelta(seconds=2))

    # when the loop looks before the retry is due, then after
    before = services.deliver_due_outbound(now=now + timedelta(seconds=1))
    after = services.deliver_due_outbound(now=now + timedelta(seconds=2))

    # then it is sent once, on time
    assert (before, after) == (0, 1)
    message.refresh_from_db()
    assert (message.status, message.attempts) == ("sent", 2)
    assert len(fake_provider.requests) == 2
