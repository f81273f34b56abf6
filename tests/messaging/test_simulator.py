"""The demo simulator sends real, signed wire-format traffic on every channel."""

from __future__ import annotations

import random

import pytest

from demo.inbound import simulate_inbound
from demo.messaging_seed import seed_messaging_demo
from messaging.models import ChannelAccount, Conversation
from tests.factories import QueueFactory, ServiceChannelFactory


@pytest.fixture
def demo_accounts(db, settings):
    settings.ROUTING_MODE = "manual"
    ServiceChannelFactory(key="messaging")
    ServiceChannelFactory(key="chat")
    QueueFactory(name="SMS & WhatsApp")
    QueueFactory(name="Web chat")
    return seed_messaging_demo()


@pytest.mark.parametrize("kind", ["sms", "whatsapp", "messenger", "webchat"])
def test_simulated_message_passes_the_real_webhook(demo_accounts, kind):
    rng = random.Random(7)

    first = simulate_inbound(kind, rng=rng)
    answer = simulate_inbound(kind, rng=random.Random(7))

    assert first is not None
    assert answer is not None
    assert first.account.kind == kind
    conversation = Conversation.objects.get(account__kind=kind)
    # the same customer came back and answered the bot's first question with their name
    assert answer.conversation == conversation
    assert conversation.messages.filter(author="bot").count() >= 2
    assert conversation.customer.display_name


def test_seeding_twice_changes_nothing(demo_accounts):
    seed_messaging_demo()

    assert ChannelAccount.objects.count() == 4


def test_routing_simulator_call_with_service_channel_keys(demo_accounts):
    rng = random.Random(3)

    chat = simulate_inbound("chat", name="Ignored", text="Is the store open Sunday?", rng=rng)
    other = simulate_inbound("messaging", name="Ignored", text="Wrong item received", rng=rng)

    assert (chat.account.kind, chat.text) == ("webchat", "Is the store open Sunday?")
    assert other.account.kind in {"sms", "whatsapp", "messenger"}
    assert other.text == "Wrong item received"


def test_a_demo_customer_is_one_person_on_sms_and_whatsapp(demo_accounts):
    sms = simulate_inbound("sms", rng=random.Random(7))
    whatsapp = simulate_inbound("whatsapp", rng=random.Random(7))

    assert sms.conversation.customer == whatsapp.conversation.customer
    identities = sms.conversation.customer.identities.values_list("kind", flat=True)
    assert sorted(identities) == ["email", "phone", "whatsapp"]
