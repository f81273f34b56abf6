"""Presence test fixtures: a small contact center set up through the services."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group

from omnirouter import roles
from presence.models import Agent, DeclineReason, PresenceConfiguration, PresenceStatus
from routing.models import Queue, ServiceChannel
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)


@dataclass
class Center:
    chat: ServiceChannel
    case: ServiceChannel
    support: Queue
    billing: Queue
    available: PresenceStatus  # chat + case
    chat_only: PresenceStatus
    busy: PresenceStatus
    lunch: PresenceStatus  # offline, not allowed to the agents' configuration
    config: PresenceConfiguration  # console required, reasons required
    alice: Agent
    bob: Agent
    supervisor: AbstractBaseUser


@pytest.fixture
def center(transactional_db) -> Center:
    chat = ServiceChannelFactory(key="chat", label="Chat")
    case = ServiceChannelFactory(key="case", label="Case")
    support = QueueFactory(
        name="Support",
        routing_config=RoutingConfigurationFactory(name="support", push_timeout_seconds=120),
    )
    billing = QueueFactory(
        name="Billing",
        routing_config=RoutingConfigurationFactory(name="billing", push_timeout_seconds=120),
    )
    available = make_status("Available", [chat, case])
    chat_only = make_status("Available - Chat", [chat])
    busy = make_status("Busy", [])
    lunch = make_status("Lunch", [], online=False)
    config = PresenceConfigurationFactory(
        name="agents",
        capacity=5,
        console_required=True,
        require_decline_reason=True,
    )
    config.decline_reasons.set(
        [
            DeclineReason.objects.create(label="Wrong skill"),
            DeclineReason.objects.create(label="Going on break"),
            DeclineReason.objects.create(label="Retired reason", active=False),
        ]
    )
    config.allowed_statuses.set([available, chat_only, busy])
    supervisor = get_user_model().objects.create_user("sam", password="sup-pass-123")
    supervisor.groups.add(Group.objects.get_or_create(name=roles.SUPERVISOR)[0])
    return Center(
        chat=chat,
        case=case,
        support=support,
        billing=billing,
        available=available,
        chat_only=chat_only,
        busy=busy,
        lunch=lunch,
        config=config,
        alice=make_agent("alice", queues=[support, billing], config=config),
        bob=make_agent("bob", queues=[support, billing], config=config),
        supervisor=supervisor,
    )
