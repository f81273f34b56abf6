"""End to end in real browsers: a customer uses the web-chat widget on the demo shop, the bot asks
its questions, the real Celery worker routes the conversation, an agent accepts it in the console,
and both sides exchange messages live; the customer's earlier SMS shows in the agent's panel."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from messaging import services
from messaging.models import AccountKind, ChannelAccount, Conversation
from routing.models import ServiceChannel
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    make_agent,
    make_status,
)
from tests.harness import save_screenshot
from tests.messaging.conftest import sms_params, twilio_signature

FLOW = [
    {"key": "name", "ask": "Hi! What's your name?"},
    {
        "key": "topic",
        "ask": "What can we help with?",
        "choices": [
            {"label": "Orders", "value": "orders"},
            {"label": "Billing", "value": "billing"},
        ],
    },
]


@pytest.fixture
def shop(transactional_db, client):
    """The routing world, a web-chat account, agent Alice, and a customer who wrote by SMS
    before (her web-chat visitor identity was merged into that record by an agent)."""
    chat = ServiceChannel.objects.create(key="chat", label="Web chat")
    messaging = ServiceChannel.objects.create(key="messaging", label="Messaging")
    config = RoutingConfigurationFactory(size_units=1, push_timeout_seconds=120)
    chat_queue = QueueFactory(name="Web chat", routing_config=config)
    sms_queue = QueueFactory(name="SMS & WhatsApp", routing_config=config)
    status = make_status("Available - Chat & Messaging", [chat, messaging])
    make_status("Offline", [], online=False)
    alice = make_agent(
        "alice",
        queues=[chat_queue, sms_queue],
        config=PresenceConfigurationFactory(capacity=10, console_required=True),
        password="alice-pass-123",
    )
    alice.user.first_name = "Alice"
    alice.user.save(update_fields=["first_name"])
    webchat = ChannelAccount.objects.create(
        name="Shop chat",
        kind=AccountKind.WEBCHAT,
        queue=chat_queue,
        service_channel=chat,
        bot_flow=FLOW,
    )
    sms = ChannelAccount.objects.create(
        name="Support SMS",
        kind=AccountKind.SMS,
        queue=sms_queue,
        service_channel=messaging,
        account_sid="AC0123456789abcdef0123456789abcdef",
        auth_token="twilio-auth-token",
        phone_number="+15005550006",
    )
    # The earlier SMS, through the real webhook with a valid signature; it ended unanswered.
    params = sms_params(sms, "+15551230001", "Where is my parcel? Order AB-1234", "SMearlier01")
    path = f"/webhooks/sms/{sms.pk}/"
    response = client.post(
        path,
        data=urlencode(params),
        content_type="application/x-www-form-urlencoded",
        HTTP_X_TWILIO_SIGNATURE=twilio_signature(
            sms.auth_token, f"http://testserver{path}", params
        ),
    )
    assert response.status_code == 200
    services.end_idle_conversations(now=timezone.now() + timedelta(days=1))
    sms_customer = Conversation.objects.get(account=sms).customer
    visitor_token = services.issue_visitor_token()  # the widget got it on her earlier visit
    visitor = services.identify_or_create_customer(
        kind="webchat", value=services.visitor_key(visitor_token)
    ).customer
    admin = get_user_model().objects.create_superuser("admin", password="admin-pass-123")
    services.merge_customers(survivor=sms_customer, other=visitor, actor=admin)
    return {
        "alice": alice,
        "status": status,
        "webchat": webchat,
        "customer": sms_customer,
        "visitor_token": visitor_token,
    }


@pytest.mark.browser
def test_web_chat_customer_and_agent_talk_live(shop, live_asgi_server, page_factory):
    # given Alice in her console, available for chat
    agent = page_factory(base_url=live_asgi_server, viewport={"width": 1400, "height": 1000})
    agent.goto("/accounts/login/?next=/console/")
    agent.fill("input[name=username]", "alice")
    agent.fill("input[name=password]", "alice-pass-123")
    agent.click("button[type=submit]")
    agent.wait_for_url("**/console/")
    agent.locator("#status-select:enabled").wait_for()
    agent.locator("#status-select").select_option(value=str(shop["status"].pk))
    agent.wait_for_function(
        "document.getElementById('status-select').dataset.online === 'true'", timeout=10_000
    )

    # and a returning customer on the shop's page
    customer = page_factory(base_url=live_asgi_server, viewport={"width": 1000, "height": 800})
    customer.add_init_script(
        "window.localStorage.setItem("
        f"'omnirouter.webchat.{shop['webchat'].public_key}.visitor', '{shop['visitor_token']}')"
    )
    customer.goto("/demo/shop/")

    # when the customer opens the chat and answers the bot
    customer.get_by_role("button", name="Chat with us").click()
    widget = customer.locator("#omni-wc-panel")
    widget.get_by_label("Your message").fill("Hello")
    widget.get_by_role("button", name="Send").click()
    widget.locator(".omni-wc-out", has_text="Hi! What's your name?").wait_for()
    widget.get_by_label("Your message").fill("Ana")
    widget.get_by_label("Your message").press("Enter")
    widget.locator(".omni-wc-out", has_text="What can we help with?").wait_for()
    widget.locator(".omni-wc-choices").get_by_role("button", name="Billing").click()
    widget.locator(".omni-wc-out", has_text="An agent will be with you shortly").wait_for()

    # then the worker routes it to Alice, who accepts
    offer = agent.locator(".offer-card", has_text="Web chat")
    offer.wait_for(timeout=20_000)
    save_screenshot(agent, "messaging-offer")
    offer.get_by_role("button", name="Accept").click()
    view = agent.locator(".conv[data-status='active']")
    view.wait_for(timeout=15_000)
    # the bot transcript is in the tab, and the customer's earlier SMS is in the side panel
    for line in ("Hello", "Hi! What's your name?", "Ana", "Billing"):
        view.locator(".conv-log .msg-text", has_text=line).first.wait_for()
    texts = view.locator(".conv-log .msg-text").all_inner_texts()
    assert texts[:4] == ["Hello", "Hi! What's your name?", "Ana", "What can we help with?"]
    past = view.locator(".past-conversation", has_text="SMS")
    past.wait_for()
    past.locator("summary").click()
    past.locator(".msg-text", has_text="Where is my parcel? Order AB-1234").wait_for()
    widget.locator(".omni-wc-system", has_text="Alice has joined the chat.").wait_for()

    # when they talk
    view.get_by_label("Reply").fill("Hi Ana, I can help with your invoice.")
    view.get_by_role("button", name="Send").click()
    widget.locator(".omni-wc-out", has_text="Hi Ana, I can help with your invoice.").wait_for()
    widget.get_by_label("Your message").fill("It shows the wrong address.")
    widget.get_by_label("Your message").press("Enter")
    view.locator(".msg-in .msg-text", has_text="It shows the wrong address.").wait_for()

    # then both sides saw everything live, and the reply reached the widget (delivered)
    view.locator(".msg-agent[data-status='delivered']").wait_for(timeout=10_000)
    save_screenshot(agent, "messaging-console-conversation")
    save_screenshot(customer, "messaging-webchat-widget")
    conversation = Conversation.objects.get(account=shop["webchat"])
    assert conversation.customer == shop["customer"]
    assert (conversation.status, conversation.assigned_agent) == ("active", shop["alice"])
    assert list(conversation.messages.values_list("author", "text")) == [
        ("customer", "Hello"),
        ("bot", "Hi! What's your name?"),
        ("customer", "Ana"),
        ("bot", "What can we help with?"),
        ("customer", "Billing"),
        ("bot", "Thank you. An agent will be with you shortly."),
        ("system", "Alice has joined the chat."),
        ("agent", "Hi Ana, I can help with your invoice."),
        ("customer", "It shows the wrong address."),
    ]

    # and ending the conversation from the tab closes the work (the tab goes) and tells the
    # customer
    view.get_by_role("button", name="End conversation").click()
    agent.locator("#no-work").wait_for(state="visible", timeout=10_000)
    assert agent.locator(".conv").count() == 0
    widget.locator(".omni-wc-system", has_text="This chat has ended.").wait_for()
    alice = shop["alice"]
    alice.refresh_from_db()
    assert alice.used_capacity == 0
