"""In a real browser: a customer who wrote by SMS two days ago writes on WhatsApp from the same
number; the agent's conversation tab says "Also wrote on SMS 2 days ago" and shows the SMS in
the customer's timeline, searchable."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from messaging import services
from messaging.models import AccountKind, ChannelAccount, Conversation
from routing import services as routing
from routing.models import AgentWork, ServiceChannel
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    make_agent,
    make_status,
)
from tests.harness import save_screenshot


@pytest.fixture
def returning_customer(transactional_db):
    messaging = ServiceChannel.objects.create(key="messaging", label="Messaging")
    queue = QueueFactory(
        name="SMS & WhatsApp",
        routing_config=RoutingConfigurationFactory(size_units=1, push_timeout_seconds=300),
    )
    status = make_status("Available", [messaging])
    make_status("Offline", [], online=False)
    common = {"queue": queue, "service_channel": messaging}
    sms = ChannelAccount.objects.create(name="Support SMS", kind=AccountKind.SMS, **common)
    whatsapp = ChannelAccount.objects.create(
        name="Support WhatsApp", kind=AccountKind.WHATSAPP, **common
    )
    earlier = timezone.now() - timedelta(days=2, hours=1)
    old = services.receive_inbound(
        account=sms,
        sender="+1 (415) 555-0100",
        text="Where is my parcel? Order LU-20931",
        sender_name="Ana Lopez",
        now=earlier,
    ).message.conversation
    services.close_conversation(conversation_id=old.pk, by="customer", now=earlier)
    alice = make_agent(
        "alice",
        queues=[queue],
        config=PresenceConfigurationFactory(capacity=5, console_required=False),
        status=status,
        password="alice-pass-123",
    )
    new = services.receive_inbound(
        account=whatsapp, sender="14155550100", text="Hi, me again about my parcel"
    ).message.conversation
    assert new.customer_id == old.customer_id
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the worker routes it, or this pass does
        routing.route_waiting_work()
        work = AgentWork.objects.filter(agent=alice, item_id=new.work_item_id).first()
        if work is not None:
            break
        time.sleep(0.2)
    assert work is not None
    routing.accept_work(work_id=work.pk, agent=alice)
    return {"old": old, "new": Conversation.objects.get(pk=new.pk)}


@pytest.mark.browser
def test_the_agent_sees_the_customers_other_channel_and_searches_the_story(
    returning_customer, live_asgi_server, page_factory
):
    page = page_factory(base_url=live_asgi_server, viewport={"width": 1400, "height": 1000})
    page.goto("/accounts/login/?next=/console/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")

    view = page.locator(".conv[data-status='active']")
    view.wait_for(timeout=15_000)
    also = view.locator(".also-wrote")
    also.wait_for(timeout=10_000)
    assert also.inner_text() == "Also wrote on SMS 2 days ago"
    past = view.locator(".past-conversation", has_text="SMS")
    past.wait_for()
    assert past.get_attribute("data-conversation-id") == str(returning_customer["old"].pk)

    # when she searches the customer's story for the order number
    view.get_by_label("Search messages and cases").fill("LU-20931")
    view.get_by_role("button", name="Search", exact=True).click()

    # then the SMS conversation is open at the matching message
    match = view.locator(".past-conversation[open] .msg-match .msg-text")
    match.wait_for(timeout=10_000)
    assert match.inner_text() == "Where is my parcel? Order LU-20931"
    save_screenshot(page, "messaging-customer-timeline")

    view.get_by_label("Search messages and cases").fill("no such words")
    view.get_by_role("button", name="Search", exact=True).click()
    view.locator(".conv-history .muted", has_text="Nothing matches.").wait_for(timeout=10_000)
