"""Pages work under the Content-Security-Policy in a real browser (no inline scripts or styles
left behind), and the web-chat widget replaces a token the server did not issue."""

from __future__ import annotations

import pytest

from messaging import services
from messaging.models import AccountKind, ChannelAccount
from tests.factories import QueueFactory, ServiceChannelFactory, make_agent

pytestmark = pytest.mark.browser


def _watch(page):
    """Console errors and page errors, CSP violations among them."""
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def test_pages_run_under_the_content_security_policy(live_asgi_server, page_factory):
    make_agent("alice", password="alice-pass-123")
    page = page_factory(base_url=live_asgi_server)
    problems = _watch(page)

    response = page.goto("/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "unsafe-inline" not in policy
    assert "camera=()" in response.headers["permissions-policy"]

    # the language menu submits itself (a script file now, not an inline handler)
    page.locator("#lang-select").select_option("ja")
    page.wait_for_function("document.documentElement.lang === 'ja'")
    page.locator("#lang-select").select_option("en")
    page.wait_for_function("document.documentElement.lang === 'en'")

    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-pass-123")
    page.click("button[type=submit]")
    page.wait_for_url("**/console/")
    page.locator("#status-select:enabled").wait_for()  # the console's socket connected

    page.goto("/api/docs/")
    page.locator(".swagger-ui .info .title", has_text="OmniRouter API").wait_for()
    page.goto("/api/docs/redoc/")
    page.locator("h1", has_text="OmniRouter API").wait_for()

    assert problems == []


def test_the_widget_replaces_a_token_the_server_did_not_issue(live_asgi_server, page_factory):
    # given the demo shop with a web chat, and a browser holding a made-up visitor token
    account = ChannelAccount.objects.create(
        name="Shop chat",
        kind=AccountKind.WEBCHAT,
        queue=QueueFactory(name="Web chat"),
        service_channel=ServiceChannelFactory(key="chat"),
        bot_flow=[{"key": "name", "ask": "Hi! What's your name?"}],
    )
    storage_key = f"omnirouter.webchat.{account.public_key}.visitor"
    page = page_factory(base_url=live_asgi_server)
    problems = _watch(page)
    page.add_init_script(
        f"if (!sessionStorage.getItem('seeded')) {{ sessionStorage.setItem('seeded', '1');"
        f" localStorage.setItem('{storage_key}', 'made-up-token-0123456789abcdef'); }}"
    )
    page.goto("/demo/shop/")

    # when the customer opens the chat and writes
    page.get_by_role("button", name="Chat with us").click()
    page.wait_for_function(
        f"(localStorage.getItem('{storage_key}') || '').includes('.')", timeout=10_000
    )
    widget = page.locator("#omni-wc-panel")
    widget.get_by_label("Your message").fill("Hello")
    widget.get_by_role("button", name="Send").click()

    # then the conversation works under a token the server issued
    widget.locator(".omni-wc-out", has_text="Hi! What's your name?").wait_for()
    token = page.evaluate(f"localStorage.getItem('{storage_key}')")
    assert services.visitor_token_valid(token)
    # the refused first connection is an expected close, not a page error
    assert [p for p in problems if "WebSocket" not in p] == []
