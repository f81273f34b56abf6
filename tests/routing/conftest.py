"""Routing test fixtures: a small world set up through the services."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from presence.models import PresenceStatus
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
    # These tests drive routing passes themselves, with explicit clocks.
    settings.ROUTING_MODE = "manual"
    settings.ROUTING_REOFFER_COOLDOWN_SECONDS = 60


@pytest.fixture
def fast_passwords(settings):
    """For tests that make agents in this process only: hashing their passwords properly costs
    most of such a test's time. (Servers in other processes must verify real hashes.)"""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class World:
    chat: ServiceChannel
    case: ServiceChannel
    support: Queue  # routing priority 2, least active
    vip: Queue  # routing priority 1, least active
    available: PresenceStatus  # chat + case
    chat_only: PresenceStatus
    busy: PresenceStatus


@pytest.fixture
def world(db) -> World:
    chat = ServiceChannelFactory(key="chat", label="Chat")
    case = ServiceChannelFactory(key="case", label="Case", default_size_units=2)
    support = QueueFactory(
        name="Support", routing_config=RoutingConfigurationFactory(name="std", routing_priority=2)
    )
    vip = QueueFactory(
        name="VIP", routing_config=RoutingConfigurationFactory(name="vip", routing_priority=1)
    )
    return World(
        chat=chat,
        case=case,
        support=support,
        vip=vip,
        available=make_status("Available", [chat, case]),
        chat_only=make_status("Available - Chat", [chat]),
        busy=make_status("Busy", []),
    )


@pytest.fixture
def api_config(db):
    """Agents who work through the API: no console needed."""
    return PresenceConfigurationFactory(name="api agents", capacity=10, console_required=False)
