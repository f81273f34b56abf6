"""The console's suggestions box in headless Chromium, against daphne on the test database: a
model trained on generated history, an accepted billing chat, its predicted queue with the terms
that weighed most, prefilled values, similar resolved items, and the agent's feedback stored."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from assist import history, services
from assist.models import Feedback
from routing import services as routing
from routing.models import AgentWork, Queue, ServiceChannel
from tests.factories import PresenceConfigurationFactory, make_agent, make_status
from tests.harness import save_screenshot

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "console-pass-123"


def test_an_agent_sees_and_uses_suggestions_beside_the_work(
    live_asgi_server, settings, page_factory
):
    # given a model trained on past work, and a billing chat accepted by alice
    settings.ROUTING_MODE = "manual"
    history.seed_history(300)
    services.train_version()
    billing = Queue.objects.get(name=history.BILLING)
    chat = ServiceChannel.objects.get(key="chat")
    alice = make_agent(
        "alice",
        queues=[billing],
        config=PresenceConfigurationFactory(capacity=4, console_required=False),
        status=make_status("Available", [chat]),
        password=PASSWORD,
    )
    routing.enqueue_work(
        queue=billing,
        channel=chat,
        subject="Charged twice for ORD-482913, please refund $35 to kim@example.com",
    )
    routing.route_waiting_work()
    routing.accept_work(work_id=AgentWork.objects.get(agent=alice).pk, agent=alice)

    # when she opens her console
    page = page_factory(base_url=live_asgi_server, viewport={"width": 1280, "height": 1000})
    page.goto("/")
    page.get_by_label(re.compile("Username")).fill("alice")
    page.get_by_label(re.compile("Password")).fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/$"))

    # then beside the work: the suggested queue and why, values read from the message, and
    # similar resolved items with their resolutions
    box = page.locator(".assist-box")
    expect(box).to_have_attribute("data-ready", "true", timeout=20_000)
    expect(box.locator(".assist-queue")).to_contain_text("Suggested queue: Billing")
    expect(box.locator(".assist-why")).to_contain_text("Because of:")
    expect(box.get_by_label("Order number")).to_have_value("ORD-482913")
    expect(box.get_by_label("E-mail")).to_have_value("kim@example.com")
    expect(box.locator(".assist-suggestions li")).to_have_count(3)
    expect(box.locator(".assist-resolution").first).to_contain_text("[refund]")
    save_screenshot(page, "console-suggestions")

    # when she uses the first suggestion and corrects the e-mail
    box.locator(".assist-suggestions li").first.get_by_role("button", name="Use").click()
    expect(box.locator(".assist-status").last).to_have_text("Thanks: noted.")
    box.get_by_label("E-mail").fill("kim.sato@example.com")
    box.get_by_label("E-mail").locator("xpath=..").get_by_role("button", name="Keep").click()
    expect(box.locator(".assist-status").first).to_have_text("Thanks: noted.")

    # then the resolution is in her close note and both answers are stored
    note = page.get_by_label("Disposition note")
    expect(note).to_have_value(re.compile(r"^\[refund\] "))
    assert sorted(Feedback.objects.values_list("field", "kind", "corrected_value")) == [
        ("email", "corrected", "kim.sato@example.com"),
        ("suggestion", "used", ""),
    ]
