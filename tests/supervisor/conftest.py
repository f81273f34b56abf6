"""Supervisor test fixtures: a small center (two supervised queues, one not) built through the
services, and users for each role."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from omnirouter import roles
from presence.models import PresenceConfiguration, PresenceStatus
from routing.models import Queue, ServiceChannel
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_status,
)


@pytest.fixture(autouse=True)
def _manual_routing(settings):
    # In-process tests drive routing passes themselves, with explicit clocks.
    settings.ROUTING_MODE = "manual"
    settings.ROUTING_REOFFER_COOLDOWN_SECONDS = 60


@dataclass
class Center:
    chat: ServiceChannel
    chat_queue: Queue  # service level target 20 s, goal 80 %
    cases_queue: Queue  # target 60 s, goal 90 %
    other_queue: Queue  # nobody in these tests supervises it but admins
    available: PresenceStatus  # online for chat
    busy: PresenceStatus  # online, no channel
    api_agents: PresenceConfiguration  # no console needed, capacity 10


@pytest.fixture
def center(db) -> Center:
    chat = ServiceChannelFactory(key="chat", label="Chat")
    return Center(
        chat=chat,
        chat_queue=QueueFactory(
            name="Chat",
            routing_config=RoutingConfigurationFactory(
                name="chat config",
                routing_priority=1,
                push_timeout_seconds=120,
                service_level_target_seconds=20,
                service_level_goal_percent=80,
            ),
        ),
        cases_queue=QueueFactory(
            name="Cases",
            routing_config=RoutingConfigurationFactory(
                name="cases config",
                routing_priority=1,
                push_timeout_seconds=120,
                service_level_target_seconds=60,
                service_level_goal_percent=90,
            ),
        ),
        other_queue=QueueFactory(
            name="Other",
            routing_config=RoutingConfigurationFactory(name="other config", routing_priority=1),
        ),
        available=make_status("Available", [chat]),
        busy=make_status("Busy", []),
        api_agents=PresenceConfigurationFactory(
            name="api agents", capacity=10, console_required=False
        ),
    )


def make_user(username: str, *, group: str | None = None, superuser: bool = False):
    user_model = get_user_model()
    if superuser:
        return user_model.objects.create_superuser(username=username, password="pass-12345678")
    user = user_model.objects.create_user(username=username, password="pass-12345678")
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def make_supervisor(username: str, *queues: Queue):
    user = make_user(username, group=roles.SUPERVISOR)
    for queue in queues:
        queue.supervisors.add(user)
    return user


@pytest.fixture
def supervisor(center: Center):
    """Supervises Chat and Cases, not Other."""
    return make_supervisor("sue", center.chat_queue, center.cases_queue)


@pytest.fixture
def admin_user(db):
    return make_user("root", superuser=True)
