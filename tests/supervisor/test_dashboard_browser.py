"""The supervisor dashboard in headless Chromium against the production parts: daphne serving
HTTP and WebSockets, a real Celery worker routing, Redis, PostgreSQL. Work comes in through the
intake API and the agent acts through the REST API with a token, as an integration would.

The screenshots in docs/screenshots/supervisor-dashboard.png and supervisor-push-dialog.png are
copies of this test's artifacts.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from playwright.sync_api import Page, expect
from rest_framework.authtoken.models import Token

from omnirouter import roles
from presence.models import Agent
from routing import services
from routing.models import ActionLog, AgentWork, ExceptionRule, Skill, WorkItem
from routing.services.skills import need, require_skills
from supervisor.services import record_queue_samples
from tests.factories import make_agent
from tests.harness import save_screenshot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.worker]

PASSWORD = "supervisor-pass-123"
VIEWPORT = {"width": 1440, "height": 900}


def seconds_of(text: str) -> int:
    """'1:05' -> 65, '1:02:03' -> 3723 (the dashboard's duration format)."""
    total = 0
    for part in text.strip().split(":"):
        total = total * 60 + int(part)
    return total


def play_earlier_hour(center, hiro) -> None:
    """Forty minutes of earlier traffic handled by Hiro, sampled every two minutes as beat
    would (each sample taken while that round's items still wait), so the trend charts have a
    history. Every fifth customer gives up after 50 s. Hiro goes offline at the end."""
    start = timezone.now() - timedelta(minutes=40)
    services.set_presence(agent=hiro, status=center.available, now=start)
    for n in range(20):
        at = start + timedelta(minutes=2 * n)
        items = [
            services.enqueue_work(
                queue=center.chat_queue, channel=center.chat, subject=f"Earlier {n}.{i}", now=at
            )
            for i in range(1 + n % 3)
        ]
        sampled = at + timedelta(seconds=10 + (n * 7) % 30)
        record_queue_samples(now=sampled)
        for i, item in enumerate(items):
            if (n + i) % 5 == 4:
                services.cancel_work_item(item_id=item.pk, now=at + timedelta(seconds=50))
        services.route_waiting_work(now=sampled + timedelta(seconds=1))
        for work in AgentWork.objects.filter(item__in=items, state="pushed"):
            services.accept_work(work_id=work.pk, agent=hiro, now=sampled + timedelta(seconds=2))
            services.close_work(work_id=work.pk, agent=hiro, now=sampled + timedelta(seconds=70))
    services.set_presence(agent=hiro, status=None, now=start + timedelta(minutes=40))


@pytest.fixture
def stack(live_asgi_server, center, settings):
    # Setup in this process must not queue routing tasks of its own: the server's worker routes.
    settings.ROUTING_MODE = "manual"
    user_model = get_user_model()
    sue = user_model.objects.create_user(
        "sue", password=PASSWORD, first_name="Sue", last_name="Park"
    )
    sue.groups.add(Group.objects.get_or_create(name=roles.SUPERVISOR)[0])
    center.chat_queue.supervisors.add(sue)
    center.cases_queue.supervisors.add(sue)
    ann = make_agent(
        "ann", queues=[center.chat_queue], config=center.api_agents, status=center.busy
    )
    hiro = make_agent(
        "hiro", queues=[center.chat_queue, center.cases_queue], config=center.api_agents
    )
    kai = make_agent(
        "kai", queues=[center.cases_queue], config=center.api_agents, status=center.available
    )
    for agent, (first, last) in (
        (ann, ("Ann", "Lee")),
        (hiro, ("Hiro", "Sato")),
        (kai, ("Kai", "Ito")),
    ):
        user_model.objects.filter(pk=agent.user_id).update(first_name=first, last_name=last)
    play_earlier_hour(center, hiro)
    intake = user_model.objects.create_user("crm", password="crm-pass-123")
    intake.groups.add(Group.objects.get_or_create(name=roles.INTAKE)[0])
    return {
        "url": live_asgi_server,
        "center": center,
        "ann": ann,
        "ann_token": Token.objects.create(user=ann.user).key,
        "kai_token": Token.objects.create(user=kai.user).key,
        "intake_token": Token.objects.create(user=intake).key,
    }


def api(stack, method: str, path: str, token: str, body: dict | None = None) -> Any:
    response = requests.request(
        method,
        f"{stack['url']}{path}",
        json=body,
        headers={"Authorization": f"Token {token}"},
        timeout=10,
    )
    assert response.status_code < 300, f"{method} {path}: {response.status_code} {response.text}"
    return response.json()


def open_dashboard(page_factory, stack) -> Page:
    page = page_factory(base_url=stack["url"], viewport=VIEWPORT)
    page.goto("/accounts/login/?next=/supervisor/")
    page.get_by_label(re.compile("Username|ユーザー名")).fill("sue")
    page.get_by_label(re.compile("Password|パスワード")).fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/supervisor/$"))
    expect(page.locator("#sv-live-text")).to_have_text("Live")
    return page


def queue_row(page: Page, name: str):
    return page.locator("#sv-queues tbody tr", has=page.locator("th", has_text=name))


def agent_row(page: Page, name: str):
    return page.locator("#sv-agents tbody tr", has=page.locator("th", has_text=name))


def test_dashboard_follows_an_item_from_waiting_to_accepted(stack, page_factory):
    center = stack["center"]
    page = open_dashboard(page_factory, stack)
    chat = queue_row(page, "Chat")
    expect(chat.locator("td").nth(0)).to_have_text("0")  # waiting
    expect(agent_row(page, "Ann Lee").locator("td").nth(0)).to_contain_text("Busy")
    expect(page.locator("#chart-backlog svg polyline")).to_have_count(2)  # Cases, Chat

    # when a customer's item arrives through the intake API while Ann is busy
    item = api(
        stack,
        "POST",
        "/api/work-items/",
        stack["intake_token"],
        {
            "queue": center.chat_queue.pk,
            "channel": center.chat.pk,
            "subject": "Where is my parcel?",
        },
    )

    # then within seconds the backlog shows it waiting, and it is next in line
    expect(chat.locator("td").nth(0)).to_have_text("1", timeout=5_000)
    expect(page.locator("#sv-next tbody tr").first).to_contain_text("Where is my parcel?")
    expect(page.locator("#t-waiting")).to_have_text("1")

    # and its longest wait keeps growing on screen
    longest = chat.locator("td.sv-longest")
    first = seconds_of(longest.inner_text())
    wait_for(
        lambda: seconds_of(longest.inner_text()) >= first + 2,
        timeout=10,
        what="the longest wait to grow",
    )

    # when an exception rule that notifies finds it waited too long, the alert shows at once
    services.save_exception_rule(
        rule=ExceptionRule(),
        changes={
            "name": "Slow chat",
            "trigger": "waited",
            "threshold": 1,
            "actions": {"notify": True},
            "queue": center.chat_queue,
        },
    )
    assert services.run_exception_rules() == {"Slow chat": 1}
    expect(page.locator("#sv-alerts li").first).to_contain_text(
        "Chat: rule “Slow chat” fired for 1 item (waited too long)."
    )

    # when Ann becomes available, the worker offers it to her, and she accepts through the API
    api(stack, "PUT", "/api/me/presence/", stack["ann_token"], {"status": center.available.pk})
    offer = wait_for(
        lambda: [
            w
            for w in api(stack, "GET", "/api/me/work/", stack["ann_token"])
            if w["item_id"] == item["id"]
        ],
        what="the offer to Ann",
    )[0]
    expect(agent_row(page, "Ann Lee").locator("td").nth(0)).to_contain_text("Available")
    api(stack, "POST", f"/api/agent-work/{offer['id']}/accept/", stack["ann_token"])

    # then the backlog empties and the item shows as assigned to Ann, with why
    expect(chat.locator("td").nth(0)).to_have_text("0", timeout=5_000)
    expect(chat.locator("td").nth(4)).to_have_text("1")  # assigned
    ann = agent_row(page, "Ann Lee")
    expect(ann.locator("td").nth(2)).to_contain_text("1 / 10")
    expect(ann.locator("td").nth(3)).to_contain_text("Where is my parcel?")
    expect(ann.locator("td").nth(3)).to_contain_text("Assigned")
    work = page.locator("#sv-work tbody tr", has_text="Where is my parcel?")
    expect(work).to_contain_text("Ann Lee")
    expect(work).to_contain_text("Assigned")
    expect(work.locator(".sv-why")).to_contain_text("Least active")
    expect(page.locator("#sv-next tbody")).to_contain_text("Nothing waiting.")

    # a room-for-more agent stands out (Ann has 9 spare units, Kai 10)
    expect(page.locator("#sv-agents tbody tr.sv-has-room")).to_have_count(2)

    assert save_screenshot(page, "supervisor-dashboard").stat().st_size > 10_000


def test_supervisor_moves_pushes_and_sets_status_from_the_dashboard(stack, page_factory):
    center = stack["center"]
    # Kai (Cases) is busy: what reaches Cases waits instead of being routed to him
    services.set_presence(agent=Agent.objects.get(user__username="kai"), status=center.busy)
    page = open_dashboard(page_factory, stack)
    item = api(
        stack,
        "POST",
        "/api/work-items/",
        stack["intake_token"],
        {
            "queue": center.chat_queue.pk,
            "channel": center.chat.pk,
            "subject": "Wrong size delivered",
        },
    )
    row = page.locator("#sv-next tbody tr", has_text="Wrong size delivered")
    expect(row).to_contain_text("Chat")

    # when Sue moves it to Cases with the row's form
    row.get_by_label(f"Move item {item['id']} to queue").select_option(label="Cases")
    row.get_by_role("button", name="Move").click()

    # then it waits in Cases, and the page says so
    expect(page.locator("#sv-feedback")).to_have_text(f"Item {item['id']} moved to Cases.")
    expect(queue_row(page, "Cases").locator("td").nth(0)).to_have_text("1")
    expect(row).to_contain_text("Cases")

    # when she opens the push dialog while Kai is Busy
    row.get_by_role("button", name=f"Push item {item['id']} to agent").click()
    dialog = page.locator("#sv-push-dialog")
    expect(dialog).to_be_visible()
    kai_line = dialog.locator("li", has_text="Kai Ito")
    hiro_line = dialog.locator("li", has_text="Hiro Sato")

    # then it lists the members of Cases with why no one can take it, and no Push button
    expect(kai_line).to_contain_text("not available for Chat")
    expect(hiro_line).to_contain_text("offline")
    expect(dialog.get_by_role("button", name=re.compile("^Push to"))).to_have_count(0)
    dialog.get_by_role("button", name="Close").click()

    # when Kai becomes available the router offers it to him, and he declines
    kai = agent_row(page, "Kai Ito")
    kai.get_by_label("New status for Kai Ito").select_option(label="Available")
    kai.get_by_role("button", name="Set").click()
    expect(page.locator("#sv-feedback")).to_have_text("Kai Ito is now Available.")
    offer = wait_for(
        lambda: [
            w
            for w in api(stack, "GET", "/api/me/work/", stack["kai_token"])
            if w["item_id"] == item["id"]
        ],
        what="the offer to Kai",
    )[0]
    api(stack, "POST", f"/api/agent-work/{offer['id']}/decline/", stack["kai_token"], {})
    expect(row).to_be_visible()  # waiting again: the router leaves Kai alone for a while

    # then the dialog says so, and a push may still reach him
    row.get_by_role("button", name=f"Push item {item['id']} to agent").click()
    expect(kai_line).to_contain_text("refused it (offered again after")
    expect(hiro_line).to_contain_text("offline")
    push_to_kai = dialog.get_by_role("button", name="Push to Kai Ito")
    expect(push_to_kai).to_be_visible()
    assert save_screenshot(page, "supervisor-push-dialog").stat().st_size > 10_000

    # when she pushes it to Kai
    push_to_kai.click()

    # then Kai has the offer, pushed by her
    expect(page.locator("#sv-feedback")).to_have_text(f"Item {item['id']} offered to Kai Ito.")
    work = page.locator("#sv-work tbody tr", has_text="Wrong size delivered")
    expect(work).to_contain_text("Kai Ito")
    expect(work).to_contain_text("Offered")
    expect(work.locator(".sv-why")).to_have_text("Pushed by supervisor sue.")

    # when she sets Kai offline from his row
    kai.get_by_label("New status for Kai Ito").select_option(label="Offline")
    kai.get_by_role("button", name="Set").click()

    # then he is offline, and the offer went back to the queue
    expect(page.locator("#sv-feedback")).to_have_text("Kai Ito is now Offline.")
    expect(kai.locator("td").nth(0)).to_contain_text("Offline")
    expect(page.locator("#sv-next tbody tr", has_text="Wrong size delivered")).to_be_visible()

    # and each action is in the log with who did it
    log = list(ActionLog.objects.order_by("id").values_list("verb", "actor__username"))
    assert log == [
        ("move_item", "sue"),
        ("set_presence", "sue"),
        ("push_item", "sue"),
        ("set_presence", "sue"),
    ]


def test_supervisor_reads_the_skills_backlog_and_edits_an_agents_skills(stack, page_factory):
    center = stack["center"]
    japanese = Skill.objects.create(name="Japanese")
    Skill.objects.create(name="French")
    # given two items in Chat that need Japanese (Ann is busy, Hiro offline: they wait)
    for subject in ("Question in Japanese", "Another in Japanese"):
        item = api(
            stack,
            "POST",
            "/api/work-items/",
            stack["intake_token"],
            {"queue": center.chat_queue.pk, "channel": center.chat.pk, "subject": subject},
        )
        require_skills(WorkItem.objects.get(pk=item["id"]), [need(japanese.pk, 3)])
    page = open_dashboard(page_factory, stack)

    # then the backlog shows them by skill: nobody online has it, so nobody can take them
    backlog = page.locator("#sv-backlog tbody tr", has=page.locator("th", has_text="Japanese"))
    expect(backlog.locator("td")).to_have_text([re.compile("2"), re.compile(r"\d+:\d\d"), "0", "2"])

    # when Sue gives Ann Japanese at level 5 from her row
    ann = agent_row(page, "Ann Lee")
    ann.get_by_role("button", name="Edit skills of Ann Lee").click()
    dialog = page.get_by_role("dialog", name="Skills of Ann Lee")
    expect(dialog.locator("#sv-skills-list")).to_have_text("No skills yet.")
    dialog.get_by_label("Add skill").select_option(label="Japanese")
    dialog.get_by_label("Level", exact=True).fill("5")
    dialog.get_by_role("button", name="Add").click()

    # then her row and the backlog follow: one agent online has it (Ann is Busy, so still
    # nobody available for Chat can take the items)
    expect(page.locator("#sv-feedback")).to_have_text("Ann Lee: Japanese at level 5.")
    expect(ann.locator(".sv-skill-chips")).to_have_text("Japanese 5.00")
    expect(backlog.locator("td").nth(2)).to_have_text("1")
    expect(backlog.locator("td").nth(3)).to_have_text("2")

    # and a level out of range is refused with the rule, changing nothing
    level = dialog.get_by_label("Level of Japanese")
    level.fill("120")
    dialog.locator("#sv-skills-list").get_by_role("button", name="Save").click()
    expect(dialog.locator("#sv-skills-error")).to_have_text(
        "Could not do that: Ensure this value is less than or equal to 99.99."
    )
    level.fill("4.5")
    dialog.locator("#sv-skills-list").get_by_role("button", name="Save").click()
    expect(ann.locator(".sv-skill-chips")).to_have_text("Japanese 4.50")
    assert save_screenshot(page, "supervisor-skills").stat().st_size > 10_000
    dialog.get_by_role("button", name="Close").click()
    page.locator("#sv-backlog").scroll_into_view_if_needed()
    assert save_screenshot(page, "supervisor-skills-backlog").stat().st_size > 10_000

    # and each change is in the log with who made it
    log = list(ActionLog.objects.order_by("id").values_list("verb", "actor__username", "detail"))
    assert log == [
        (
            "set_agent_skill",
            "sue",
            {"skill": japanese.pk, "skill_name": "Japanese", "was": None, "level": "5.00"},
        ),
        (
            "set_agent_skill",
            "sue",
            {"skill": japanese.pk, "skill_name": "Japanese", "was": "5.00", "level": "4.50"},
        ),
    ]
