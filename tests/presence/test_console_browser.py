"""The agent console in headless Chromium, against the production parts: daphne serving HTTP and
WebSockets, a real Celery worker routing (and beat sweeping where timeouts matter), Redis,
PostgreSQL. Work comes in through the intake API, as it would from a CRM.

Screenshots of the console go to test-artifacts/ (the good ones are copied to docs/screenshots/).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from playwright.sync_api import Page, expect
from rest_framework.authtoken.models import Token

from omnirouter import roles
from presence.models import Agent, DeclineReason, PresenceStatus
from routing import services
from routing.models import AgentSkill, AgentWork, Queue, ServiceChannel, Skill, WorkItem
from routing.services.skills import need, require_skills
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)
from tests.harness import (
    ServiceProcess,
    free_port,
    python_module_command,
    save_screenshot,
    wait_for,
)

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "console-pass-123"
VIEWPORT = {"width": 1280, "height": 860}


@dataclass
class Stack:
    url: str
    chat: ServiceChannel
    support: Queue  # push timeout 60 s
    quick: Queue  # push timeout 5 s
    patient: Queue  # push timeout 10 min
    billing: Queue  # nobody is a member: transferred work waits there
    available: PresenceStatus
    alice: Agent
    bob: Agent
    intake_token: str

    def enqueue(self, subject: str, *, queue: Queue | None = None, customer: str = "") -> int:
        """Create a work item through the intake API, as a CRM would; returns its id."""
        payload: dict[str, Any] = {"order": "A-1001"}
        if customer:
            payload["customer"] = {"name": customer}
        response = requests.post(
            f"{self.url}/api/work-items/",
            json={
                "queue": (queue or self.support).pk,
                "channel": self.chat.pk,
                "subject": subject,
                "priority": 3,
                "payload": payload,
            },
            headers={"Authorization": f"Token {self.intake_token}"},
            timeout=10,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"]


@pytest.fixture
def stack(live_asgi_server, settings) -> Stack:
    # Setup in this process must not queue routing tasks of its own: the server's worker routes.
    settings.ROUTING_MODE = "manual"
    chat = ServiceChannelFactory(key="chat", label="Chat")
    support = QueueFactory(
        name="Support",
        routing_config=RoutingConfigurationFactory(name="support", push_timeout_seconds=60),
    )
    quick = QueueFactory(
        name="Quick answers",
        routing_config=RoutingConfigurationFactory(name="quick", push_timeout_seconds=5),
    )
    patient = QueueFactory(
        name="Patient",
        routing_config=RoutingConfigurationFactory(name="patient", push_timeout_seconds=600),
    )
    billing = QueueFactory(name="Billing")
    available = make_status("Available", [chat])
    make_status("Busy", [])
    config = PresenceConfigurationFactory(
        name="chat team", capacity=4, console_required=True, require_decline_reason=True
    )
    config.decline_reasons.set(
        [
            DeclineReason.objects.create(label="Wrong skill"),
            DeclineReason.objects.create(label="Going on break"),
        ]
    )
    queues = [support, quick, patient]
    alice = make_agent("alice", queues=queues, config=config, password=PASSWORD)
    bob = make_agent("bob", queues=queues, config=config, password=PASSWORD)
    for agent, (first, last) in ((alice, ("Alice", "Martin")), (bob, ("Bob", "Tanaka"))):
        get_user_model().objects.filter(pk=agent.user_id).update(first_name=first, last_name=last)
    intake = get_user_model().objects.create_user("crm", password="crm-pass-123")
    intake.groups.add(Group.objects.get_or_create(name=roles.INTAKE)[0])
    return Stack(
        url=live_asgi_server,
        chat=chat,
        support=support,
        quick=quick,
        patient=patient,
        billing=billing,
        available=available,
        alice=alice,
        bob=bob,
        intake_token=Token.objects.create(user=intake).key,
    )


# --- Helpers -----------------------------------------------------------------------------------


def open_console(page_factory, stack: Stack, username: str, **context) -> Page:
    """Log in through the login page and land on the console with the server's state drawn."""
    page = page_factory(base_url=stack.url, viewport=VIEWPORT, **context)
    page.goto("/")
    page.get_by_label(re.compile("Username|ユーザー名")).fill(username)
    page.get_by_label(re.compile("Password|パスワード")).fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/console/$"))
    expect(page.locator("body")).to_have_attribute("data-console-state", "ready")
    return page


def go_available(page: Page, stack: Stack) -> None:
    page.locator("#status-select").select_option(str(stack.available.pk))
    expect(page.locator("#status-select")).to_have_attribute("data-online", "true")
    expect(page.locator("#status-select")).to_be_enabled()


def offer_card(page: Page, subject: str):
    return page.locator(".offer-card", has=page.locator(".subject", has_text=subject))


def work_of(item_id: int) -> list[tuple[str, str]]:
    """(agent username, state) of every agent work of an item, oldest first."""
    return list(
        AgentWork.objects.filter(item_id=item_id)
        .order_by("id")
        .values_list("agent__user__username", "state")
    )


# --- Tests -------------------------------------------------------------------------------------


def test_an_agent_takes_an_offer_from_push_to_close(stack, page_factory):
    # given alice logged in and available
    page = open_console(page_factory, stack, "alice")
    expect(page.locator("#connection")).to_have_text("Connected")
    expect(page.locator("#status-select option")).to_have_text(
        ["Offline", "Available (Chat)", "Busy"]
    )
    go_available(page, stack)
    expect(page.locator("#capacity-text")).to_have_text("0 / 4 units")

    # when an item arrives through the intake API
    item_id = stack.enqueue("Refund not received", customer="Yuki Sato")

    # then it is pushed to her console as an offer card with a countdown
    card = offer_card(page, "Refund not received")
    expect(card).to_be_visible(timeout=20_000)
    expect(card.locator(".channel")).to_have_text("Chat")
    expect(card.locator(".queue")).to_have_text("Support")
    expect(card.locator(".customer")).to_have_text("Yuki Sato")
    expect(card.locator(".countdown-text")).to_have_text(re.compile(r"^Expires in \d+ s$"))
    expect(card.locator(".why")).to_contain_text("Least active")
    expect(page.locator("#capacity-text")).to_have_text("1 / 4 units")
    save_screenshot(page, "console-offer")

    # when she accepts it
    card.get_by_role("button", name="Accept").click()

    # then the card goes and the work opens in a tab with its details
    expect(card).to_have_count(0)
    tab = page.get_by_role("tab", name="Refund not received")
    expect(tab).to_have_attribute("aria-selected", "true")
    panel = page.get_by_role("tabpanel", name="Refund not received")
    expect(panel.locator(".customer")).to_have_text("Yuki Sato")
    # the item's details read as labelled rows; the raw data only on demand
    rows = panel.locator(".payload-rows > div")
    expect(rows).to_have_text(["OrderA-1001", "Customer › NameYuki Sato"])
    expect(panel.locator(".payload")).to_be_hidden()
    expect(panel.locator(".payload")).to_contain_text('"order": "A-1001"')
    expect(panel.locator(".since")).to_have_text(re.compile(r"^\d+ s ago$"))
    assert work_of(item_id) == [("alice", "opened")]
    save_screenshot(page, "console-accepted")

    # when a supervisor sets her Busy, the console says so (she did not pick it)
    busy = PresenceStatus.objects.get(name="Busy")
    services.set_presence(agent=stack.alice, status=busy)
    expect(page.locator("#console-notice")).to_have_text(
        "Your status changed from Available to Busy."
    )
    expect(page.locator("#status-select")).to_have_value(str(busy.pk))

    # and a reload (a new connection) draws the same state from the server
    page.reload()
    expect(page.locator("body")).to_have_attribute("data-console-state", "ready")
    expect(page.get_by_role("tab", name="Refund not received")).to_be_visible()

    # when she closes it with a disposition note
    panel = page.get_by_role("tabpanel", name="Refund not received")
    panel.get_by_label("Disposition note").fill("Refund issued")
    panel.get_by_role("button", name="Close work").click()

    # then the tab goes, capacity comes back, and the database says closed with her note
    expect(page.get_by_role("tab", name="Refund not received")).to_have_count(0)
    expect(page.locator("#no-work")).to_be_visible()
    expect(page.locator("#capacity-text")).to_have_text("0 / 4 units")
    work = AgentWork.objects.get(item_id=item_id)
    assert (work.state, work.end_note) == ("closed", "Refund issued")
    assert WorkItem.objects.get(pk=item_id).status == "closed"


def test_an_offer_left_alone_times_out_and_leaves_the_console(
    stack, page_factory, celery_beat_process
):
    # given alice available, and a queue whose offers expire after 5 s
    page = open_console(page_factory, stack, "alice")
    go_available(page, stack)

    # when an item is offered to her and she does nothing
    item_id = stack.enqueue("Anyone there?", queue=stack.quick)
    card = offer_card(page, "Anyone there?")
    expect(card).to_be_visible(timeout=20_000)

    # then the card goes when its countdown ends
    expect(card).to_have_count(0, timeout=20_000)
    expect(page.locator("#offer-count")).to_have_text("0")

    # and the sweep has timed the offer out and put the item back in line
    wait_for(lambda: work_of(item_id) == [("alice", "timed_out")], what="the timeout")
    assert WorkItem.objects.get(pk=item_id).status == "waiting"
    expect(page.locator("#capacity-text")).to_have_text("0 / 4 units")
    expect(page.locator("#announcer")).to_have_text(
        "The offer “Anyone there?” timed out and went back to the queue."
    )


def test_declining_asks_for_one_of_the_configurations_reasons(stack, page_factory):
    page = open_console(page_factory, stack, "alice")
    go_available(page, stack)
    item_id = stack.enqueue("Wrong department")
    card = offer_card(page, "Wrong department")
    expect(card).to_be_visible(timeout=20_000)

    # when she declines, a dialog asks for a reason from her configuration's list
    card.get_by_role("button", name="Decline").click()
    dialog = page.get_by_role("dialog", name="Decline this offer")
    expect(dialog).to_be_visible()
    expect(dialog.locator("#decline-reason-select option")).to_have_text(
        ["Choose a reason…", "Going on break", "Wrong skill"]
    )
    dialog.get_by_role("button", name="Decline").click()
    expect(dialog.locator("#decline-error")).to_have_text("Choose a reason to decline this offer.")
    assert work_of(item_id) == [("alice", "pushed")]
    dialog.locator("#decline-reason-select").select_option("Wrong skill")
    save_screenshot(page, "console-decline")
    dialog.get_by_role("button", name="Decline").click()

    # then the offer goes, and the database has her reason
    expect(card).to_have_count(0)
    expect(dialog).to_be_hidden()
    work = AgentWork.objects.get(item_id=item_id)
    assert (work.state, work.decline_reason) == ("declined", "Wrong skill")


def test_two_agents_receive_different_items_by_least_active(stack, page_factory):
    # given alice and bob, each in their own browser, both available
    alice = open_console(page_factory, stack, "alice")
    bob = open_console(page_factory, stack, "bob")
    go_available(alice, stack)
    go_available(bob, stack)

    # when two items arrive one after the other
    first = stack.enqueue("First customer", customer="Hiro Sato")
    expect(offer_card(alice, "First customer")).to_be_visible(timeout=20_000)
    second = stack.enqueue("Second customer", customer="Emma Rossi")

    # then the first goes to alice (a tie, broken by agent id: neither has been assigned yet) and
    # the second to bob, who has fewer open items than alice now
    expect(offer_card(bob, "Second customer")).to_be_visible(timeout=20_000)
    expect(offer_card(bob, "First customer")).to_have_count(0)
    expect(offer_card(alice, "Second customer")).to_have_count(0)
    assert work_of(first) == [("alice", "pushed")]
    assert work_of(second) == [("bob", "pushed")]
    expect(offer_card(bob, "Second customer").locator(".why")).to_contain_text(
        "Least active: 0 open items"
    )
    save_screenshot(alice, "console-two-agents-alice")
    save_screenshot(bob, "console-two-agents-bob")


def test_two_tabs_of_one_agent_stay_in_step(stack, page_factory, browser):
    # given alice's console open in two tabs of one browser (one session)
    first = open_console(page_factory, stack, "alice")
    second = first.context.new_page()
    second.goto("/console/")
    expect(second.locator("body")).to_have_attribute("data-console-state", "ready")
    go_available(first, stack)
    expect(second.locator("#status-select")).to_have_attribute("data-online", "true")

    # when an offer arrives and she accepts it in the first tab
    stack.enqueue("Seen everywhere")
    expect(offer_card(second, "Seen everywhere")).to_be_visible(timeout=20_000)
    offer_card(first, "Seen everywhere").get_by_role("button", name="Accept").click()

    # then the second tab shows the same: no offer, the work in a tab
    expect(offer_card(second, "Seen everywhere")).to_have_count(0)
    expect(second.get_by_role("tab", name="Seen everywhere")).to_be_visible()

    # and transferring it from the second tab clears it from the first
    panel = second.get_by_role("tabpanel", name="Seen everywhere")
    panel.get_by_label("Transfer to queue").select_option(label="Billing")
    panel.get_by_role("button", name="Transfer").click()
    expect(first.get_by_role("tab", name="Seen everywhere")).to_have_count(0)
    item = WorkItem.objects.get(subject="Seen everywhere")
    assert (item.queue_id, item.status) == (stack.billing.pk, "waiting")
    assert work_of(item.pk) == [("alice", "transferred")]


def test_the_console_speaks_japanese_to_a_japanese_browser(stack, page_factory):
    page = open_console(page_factory, stack, "alice", locale="ja-JP")
    expect(page.locator("#connection")).to_have_text("接続済み")
    expect(page.locator("#status-select option").first).to_have_text("オフライン")
    go_available(page, stack)
    stack.enqueue("配送日の変更", customer="佐藤 由紀")
    card = offer_card(page, "配送日の変更")
    expect(card).to_be_visible(timeout=20_000)
    expect(card.get_by_role("button", name="受諾")).to_be_visible()
    expect(card.locator(".countdown-text")).to_have_text(re.compile(r"^残り \d+ 秒$"))
    expect(page.locator("#capacity-text")).to_have_text("1 / 4 ユニット")
    save_screenshot(page, "console-offer-ja")


def test_heartbeats_keep_the_agent_online_and_a_closed_console_goes_offline_after_the_grace(
    stack, page_factory, celery_beat_process, service_env
):
    # The servers' grace period (shortened for tests: see SERVER_CONSOLE_GRACE_SECONDS), with
    # heartbeats at a fifth of it as in production.
    grace = int(service_env["CONSOLE_GRACE_SECONDS"])
    # given alice available with an offer she has not answered (it would wait ten minutes)
    page = open_console(page_factory, stack, "alice")
    go_available(page, stack)
    item_id = stack.enqueue("Still there?", queue=stack.patient)
    expect(offer_card(page, "Still there?")).to_be_visible(timeout=20_000)

    # when her console stays open longer than the grace period, beat sweeping every second
    time.sleep(grace + 5)

    # then its heartbeats have kept her online and the offer hers
    assert Agent.objects.get(pk=stack.alice.pk).status_id == stack.available.pk
    assert work_of(item_id) == [("alice", "pushed")]

    # when she closes the console
    page.close()

    # then, once the grace period has passed, the sweep sets her offline and takes the offer back
    wait_for(
        lambda: Agent.objects.get(pk=stack.alice.pk).status_id is None,
        timeout=grace + 30,
        what="the lost console to go offline",
    )
    assert work_of(item_id) == [("alice", "canceled")]
    assert WorkItem.objects.get(pk=item_id).status == "waiting"


# --- Reconnecting and resyncing ----------------------------------------------------------------


class OwnServer:
    """A daphne of this test's own (the session's is shared), to stop and start at will.

    Consoles resync every 2 s; consumers re-join their groups only hourly, so a lost group
    membership is repaired by the page's resync, not by the server's timer."""

    def __init__(self, env: dict[str, str], log_dir) -> None:
        self.env = {**env, "REALTIME_RESYNC_SECONDS": "2", "REALTIME_GROUP_REJOIN_SECONDS": "3600"}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.process: ServiceProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.process = ServiceProcess.start(
            "daphne (own)",
            python_module_command(
                "daphne", "-b", "127.0.0.1", "-p", str(self.port), "omnirouter.asgi:application"
            ),
            env=self.env,
            log_path=self.log_dir / f"daphne-{self.starts}.log",
        )
        self.process.wait_until(
            lambda: _answers(self.url + "/admin/login/"), timeout=60, what="HTTP answer"
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def _answers(url: str) -> bool:
    try:
        requests.get(url, timeout=2)
    except requests.RequestException:
        return False
    return True


@pytest.fixture
def own_server(stack, service_env, tmp_path) -> Iterator[OwnServer]:
    server = OwnServer(service_env, tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def flush_channel_layer() -> None:
    """What a Redis FLUSHALL (or a restart without persistence) does to the channel layer."""
    import redis

    client = redis.Redis.from_url(django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0])
    try:
        client.flushdb()
    finally:
        client.close()


def test_a_console_whose_server_restarts_reconnects_and_shows_what_came_meanwhile(
    stack, own_server, page_factory
):
    # given alice's console open and available on a server (intake goes to the session's)
    page = open_console(page_factory, replace(stack, url=own_server.url), "alice")
    go_available(page, stack)
    connection = page.locator("#connection")
    expect(connection).to_have_text("Connected")
    before = stack.enqueue("Offered before the outage", queue=stack.patient)
    earlier = offer_card(page, "Offered before the outage")
    expect(earlier.get_by_role("button", name="Accept")).to_be_enabled(timeout=20_000)

    # when the server goes away
    own_server.stop()

    # then the console says it is offline, counts down to its next try and offers to try now
    expect(connection).to_have_text(re.compile(r"^Offline: reconnecting in \d+ s$"))
    # and what needs the server cannot be pressed meanwhile
    expect(earlier.get_by_role("button", name="Accept")).to_be_disabled()
    expect(earlier.get_by_role("button", name="Decline")).to_be_disabled()
    expect(connection).to_have_attribute("data-state", "offline")
    expect(page.get_by_role("button", name="Reconnect now")).to_be_visible()
    save_screenshot(page, "console-reconnecting")

    # and while it is away an item is routed to her (she is within the grace period)
    item_id = stack.enqueue("Came while you were away", customer="Mia Chen")
    wait_for(lambda: work_of(item_id) == [("alice", "pushed")], what="the offer")
    page.get_by_role("button", name="Reconnect now").click()  # the server is still down
    expect(connection).to_have_text(re.compile(r"^Offline: reconnecting in \d+ s$"))

    # when the server is back
    own_server.start()

    # then the console reconnects by itself and shows the offer it never heard of live
    expect(connection).to_have_text("Connected", timeout=45_000)
    card = offer_card(page, "Came while you were away")
    expect(card).to_be_visible()
    expect(card.locator(".customer")).to_have_text("Mia Chen")
    expect(page.locator("#announcer")).to_have_text("New offer: Came while you were away")
    expect(page.get_by_role("button", name="Reconnect now")).to_be_hidden()
    expect(page.locator("#capacity-text")).to_have_text("2 / 4 units")
    expect(earlier.get_by_role("button", name="Accept")).to_be_enabled()
    assert work_of(before) == [("alice", "pushed")]
    save_screenshot(page, "console-reconnected")

    # and the reconnect waits had full jitter within 1 s doubling to 30 s
    bounds = page.evaluate(
        """async () => {
            const { backoffDelay } = await import("/static/js/livesocket.js");
            const top = () => 0.999999, bottom = () => 0;
            return [0, 1, 4, 5, 12].map((n) => [
                Math.round(backoffDelay(n, { random: bottom })),
                Math.round(backoffDelay(n, { random: top })),
            ]);
        }"""
    )
    assert bounds == [[0, 1000], [0, 2000], [0, 16000], [0, 30000], [0, 30000]]


def test_a_console_repairs_an_offer_whose_event_was_lost(stack, own_server, page_factory):
    # given alice's console open and available
    page = open_console(page_factory, replace(stack, url=own_server.url), "alice")
    go_available(page, stack)

    # when Redis forgets the channel layer's groups, so the next offer's push reaches no one
    flush_channel_layer()
    item_id = stack.enqueue("Pushed into the void")
    wait_for(lambda: work_of(item_id) == [("alice", "pushed")], what="the offer")

    # then the console's resync (every 2 s here) brings the offer in, and announces it
    card = offer_card(page, "Pushed into the void")
    expect(card).to_be_visible(timeout=20_000)
    expect(page.locator("#announcer")).to_have_text("New offer: Pushed into the void")
    expect(page.locator("#connection")).to_have_text("Connected")

    # and later offers keep coming
    stack.enqueue("And the next one", queue=stack.patient)
    expect(offer_card(page, "And the next one")).to_be_visible(timeout=20_000)


def test_an_agent_transfers_work_to_a_named_colleague_with_a_note(stack, page_factory):
    """Transfer to a person: refused with the engine's reason while the colleague cannot take
    it, offered to them directly once they can; they see the note and the skills it needs."""
    japanese = Skill.objects.create(name="Japanese")
    # bob speaks Japanese (without it, the refusal would name the missing skill first)
    AgentSkill.objects.create(
        agent=Agent.objects.get(user__username="bob"), skill=japanese, level=4
    )
    # given alice available and bob busy, each in their own browser
    alice = open_console(page_factory, stack, "alice")
    bob = open_console(page_factory, stack, "bob")
    go_available(alice, stack)
    bob.locator("#status-select").select_option(label="Busy")
    expect(bob.locator("#status-select")).to_be_enabled()

    # and an item that needs Japanese, accepted by alice
    item_id = stack.enqueue("Question in Japanese", customer="Yuki Sato")
    card = offer_card(alice, "Question in Japanese")
    expect(card).to_be_visible(timeout=20_000)
    require_skills(WorkItem.objects.get(pk=item_id), [need(japanese.pk, 3)])
    card.get_by_role("button", name="Accept").click()
    panel = alice.get_by_role("tabpanel", name="Question in Japanese")
    expect(panel.locator(".skills")).to_have_text("Japanese (level 3.00 or above)")

    # when she transfers it to bob while he is busy
    panel.get_by_label("Transfer to", exact=True).select_option(label="an agent")
    panel.get_by_label("Transfer to agent").select_option(label="Bob Tanaka")
    panel.get_by_label("Note for the next agent").fill("Wants to pay by bank transfer.")
    panel.get_by_role("button", name="Transfer").click()

    # then she is told why not, and keeps the work
    expect(alice.locator("#console-notice")).to_have_text(
        "That agent cannot take this work: not available for its channel."
    )
    assert work_of(item_id) == [("alice", "opened")]

    # when bob becomes available and she transfers again
    go_available(bob, stack)
    panel.get_by_role("button", name="Transfer").click()

    # then the work leaves her console and is offered to bob, who sees why, the note and skills
    expect(alice.get_by_role("tab", name="Question in Japanese")).to_have_count(0)
    bobs_card = offer_card(bob, "Question in Japanese")
    expect(bobs_card).to_be_visible(timeout=20_000)
    expect(bobs_card.locator(".why")).to_have_text("Transferred to you by Alice Martin.")
    assert work_of(item_id) == [("alice", "transferred"), ("bob", "pushed")]
    bobs_card.get_by_role("button", name="Accept").click()
    bobs_panel = bob.get_by_role("tabpanel", name="Question in Japanese")
    expect(bobs_panel.locator(".transfer-note")).to_have_text(
        "Note from Alice Martin: Wants to pay by bank transfer."
    )
    expect(bobs_panel.locator(".skills")).to_have_text("Japanese (level 3.00 or above)")
    save_screenshot(bob, "console-transferred-to-agent")
    assert WorkItem.objects.get(pk=item_id).status == "assigned"
