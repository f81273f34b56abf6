"""The Django admin: every page renders, and edits that change routing go through the services."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.authtoken.models import Token

from presence.models import Agent, DeclineReason, PresenceStatus
from routing import services
from routing.models import (
    ActionLog,
    AgentSkill,
    AgentWork,
    AgentWorkState,
    ItemSkill,
    Queue,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from tests.api_support import make_user
from tests.factories import PresenceConfigurationFactory, enqueue, make_agent


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Floor:
    world: Any
    alice: Agent
    offered: WorkItem  # offered to Alice
    waiting: WorkItem  # waiting in VIP, which has no members
    root: Any
    browser: Client


@pytest.fixture
def floor(world, api_config) -> Floor:
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    offered = enqueue(world.support, world.chat, "Refund")
    waiting = enqueue(world.vip, world.chat, "Upgrade")
    services.route_waiting_work()
    root = make_user("root", superuser=True)
    services.set_presence(agent=alice, status=world.available, actor=root)  # logged
    DeclineReason.objects.create(label="Wrong skill")
    Token.objects.create(user=root)
    browser = Client()
    browser.force_login(root)
    return Floor(world, alice, offered, waiting, root, browser)


def form_data(response) -> dict[str, Any]:
    """What the browser would post back from an admin change page, unchanged."""
    data: dict[str, Any] = {}

    def add(form) -> None:
        for name in form.fields:
            value = form[name].value()
            if value is not None:
                data[form.add_prefix(name)] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        add(inline.formset.management_form)
        for form in inline.formset.forms:
            add(form)
    return data


def admin_url(obj_or_model, view: str, *args) -> str:
    meta = obj_or_model._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{view}", args=args)


def test_every_registered_model_has_working_list_change_and_add_pages(floor):
    # Given some of everything (fixture), when a superuser opens each admin page...
    broken = []
    for model, model_admin in admin.site._registry.items():
        pages = [admin_url(model, "changelist")]
        obj = model_admin.get_queryset(_request(floor.root)).first()
        if obj is not None:
            pages.append(admin_url(model, "change", obj.pk))
        if model_admin.has_add_permission(_request(floor.root)):
            pages.append(admin_url(model, "add"))
        for page in pages:
            status = floor.browser.get(page).status_code
            if status != 200:
                broken.append((page, status))
    # ...then every one renders
    assert broken == []


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_pages_with_live_work_show_it_read_only(floor):
    work = AgentWork.objects.get(item=floor.offered)

    item_page = floor.browser.get(admin_url(floor.offered, "change", floor.offered.pk))
    waiting_page = floor.browser.get(admin_url(floor.waiting, "change", floor.waiting.pk))
    work_page = floor.browser.get(admin_url(work, "change", work.pk))

    # the item's own fields are all read-only; only its required skills (an inline) are edited
    assert list(item_page.context["adminform"].form.fields) == []
    assert b"alice" in item_page.content  # the agent work inline
    assert b"The queue has no members." in waiting_page.content
    assert work_page.context["has_change_permission"] is False
    assert work_page.context["has_delete_permission"] is False


def test_new_presence_configuration_capacity_reaches_its_agents(floor):
    # Given Alice's configuration (capacity 10) open in the admin
    config = floor.alice.presence_config
    page = floor.browser.get(admin_url(config, "change", config.pk))
    data = form_data(page)
    # When the admin saves it with capacity 4
    data["capacity"] = 4
    response = floor.browser.post(admin_url(config, "change", config.pk), data)
    # Then Alice's capacity is 4 at once
    assert response.status_code == 302, response.context["adminform"].form.errors
    floor.alice.refresh_from_db()
    assert (floor.alice.configured_capacity, floor.alice.capacity) == (4, 4)
    assert floor.alice.used_capacity == 1


def test_new_routing_priority_in_the_admin_reaches_waiting_items(floor):
    config = floor.waiting.queue.routing_config  # VIP's, priority 1
    page = floor.browser.get(admin_url(config, "change", config.pk))
    data = form_data(page)
    data["routing_priority"] = 7

    response = floor.browser.post(admin_url(config, "change", config.pk), data)

    assert response.status_code == 302
    floor.waiting.refresh_from_db()
    assert floor.waiting.routing_priority == 7


def test_cancel_action_cancels_through_the_service_and_says_what_it_refused(floor):
    # Given an offered item, and one Alice has accepted
    accepted = enqueue(floor.world.support, floor.world.chat, "Accepted")
    services.route_waiting_work()
    services.accept_work(work_id=AgentWork.objects.get(item=accepted).pk, agent=floor.alice)
    # When the admin cancels both from the list
    response = floor.browser.post(
        admin_url(WorkItem, "changelist"),
        {"action": "cancel_items", "_selected_action": [floor.offered.pk, accepted.pk]},
        follow=True,
    )
    # Then the offered one is canceled (offer withdrawn, capacity freed), the other refused
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "1 item canceled.",
        f"Not canceled: #{accepted.pk}: Item {accepted.pk} is assigned to an agent; "
        "the agent closes it.",
    ]
    floor.offered.refresh_from_db()
    assert floor.offered.status == WorkItemStatus.CANCELED
    assert AgentWork.objects.get(item=floor.offered).state == AgentWorkState.CANCELED
    floor.alice.refresh_from_db()
    assert (floor.alice.used_capacity, floor.alice.open_count) == (1, 1)


def test_set_offline_action_returns_offers_and_logs_who_did_it(floor):
    response = floor.browser.post(
        admin_url(Agent, "changelist"),
        {"action": "set_offline", "_selected_action": [floor.alice.pk]},
        follow=True,
    )

    assert [str(m) for m in response.context["messages"]] == ["1 agent set offline."]
    floor.alice.refresh_from_db()
    assert floor.alice.status is None
    floor.offered.refresh_from_db()
    assert floor.offered.status == WorkItemStatus.WAITING
    log = ActionLog.objects.filter(verb="set_presence").first()
    assert (log.actor, log.agent, log.detail) == (floor.root, floor.alice, {"status": None})


def test_adding_an_agent_in_the_admin_uses_the_configuration_capacity(floor):
    user = get_user_model().objects.create_user("dana", password="dana-pass-123")
    config = PresenceConfigurationFactory(name="small", capacity=3)

    response = floor.browser.post(
        admin_url(Agent, "add"),
        {"user": user.pk, "presence_config": config.pk, "queues": [floor.world.vip.pk]},
    )

    assert response.status_code == 302
    agent = Agent.objects.get(user=user)
    assert (agent.configured_capacity, agent.capacity, agent.status) == (3, 3, None)
    assert list(agent.queues.values_list("name", flat=True)) == ["VIP"]


def test_changing_an_agents_configuration_in_the_admin_applies_its_capacity(floor):
    config = PresenceConfigurationFactory(name="big", capacity=20, console_required=False)
    page = floor.browser.get(admin_url(floor.alice, "change", floor.alice.pk))
    data = form_data(page)
    data["presence_config"] = config.pk

    response = floor.browser.post(admin_url(floor.alice, "change", floor.alice.pk), data)

    assert response.status_code == 302
    floor.alice.refresh_from_db()
    assert (floor.alice.presence_config, floor.alice.capacity) == (config, 20)
    assert list(floor.alice.queues.values_list("name", flat=True)) == ["Support"]


def test_a_status_agents_are_in_cannot_be_deleted_in_the_admin(floor):
    status = floor.world.available
    url = admin_url(status, "delete", status.pk)

    page = floor.browser.get(url)
    floor.browser.post(url, {"post": "yes"})

    assert b"alice is in status Available" in page.content
    assert PresenceStatus.objects.filter(pk=status.pk).exists()


def test_an_agents_skills_are_edited_inline_and_logged(floor):
    japanese = Skill.objects.create(name="Japanese")
    page = floor.browser.get(admin_url(floor.alice, "change", floor.alice.pk))
    data = form_data(page)
    data["skills-0-skill"] = japanese.pk
    data["skills-0-level"] = "5.5"

    response = floor.browser.post(admin_url(floor.alice, "change", floor.alice.pk), data)

    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    assert list(AgentSkill.objects.values_list("agent_id", "skill__name", "level")) == [
        (floor.alice.pk, "Japanese", Decimal("5.50"))
    ]
    assert ActionLog.objects.filter(verb="set_agent_skill", actor=floor.root).count() == 1


def test_a_waiting_items_requirements_are_edited_inline_and_nothing_else(floor):
    japanese = Skill.objects.create(name="Japanese")
    item = floor.waiting
    page = floor.browser.get(admin_url(item, "change", item.pk))
    data = form_data(page)
    data["skills-0-skill"] = japanese.pk
    data["skills-0-min_level"] = "3"

    response = floor.browser.post(admin_url(item, "change", item.pk), data)

    assert response.status_code == 302
    assert list(ItemSkill.objects.values_list("item_id", "skill__name", "min_level")) == [
        (item.pk, "Japanese", Decimal("3.00"))
    ]
    fresh = WorkItem.objects.get(pk=item.pk)
    assert (fresh.status, fresh.queue_id, fresh.enqueued_at) == (
        item.status,
        item.queue_id,
        item.enqueued_at,
    )


def test_a_new_queue_is_supervised_by_the_admins_unless_the_form_says_otherwise(floor):
    # when an admin opens the add page of a queue, every admin is chosen as its supervisor
    page = floor.browser.get(admin_url(Queue, "add"))
    chosen = page.context["adminform"].form["supervisors"].value()
    admins = get_user_model().objects.filter(is_superuser=True).values_list("pk", flat=True)
    assert sorted(int(pk) for pk in chosen) == sorted(admins)
    assert floor.root.pk in [int(pk) for pk in chosen]
