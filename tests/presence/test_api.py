"""The presence REST API: an agent's own presence, statuses and work; admins' statuses,
presence configurations and agents. Routing passes are run by hand (ROUTING_MODE manual)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.contrib.auth import get_user_model

from presence.models import Agent, PresenceConfiguration, PresenceStatus
from routing import services
from routing.models import AgentWork, AgentWorkState, Queue, ServiceChannel, WorkItemStatus
from tests.api_support import client_for, make_user
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    enqueue,
    make_agent,
    make_status,
)


@pytest.fixture(autouse=True)
def _manual_routing_fast_passwords(settings):
    settings.ROUTING_MODE = "manual"
    # Users are made with passwords (as people make them); hashing them slowly proves nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Team:
    chat: ServiceChannel
    case: ServiceChannel
    support: Queue
    sales: Queue
    available: PresenceStatus  # chat + case
    busy: PresenceStatus  # online, no channel
    lunch: PresenceStatus  # offline, not allowed by the configuration
    config: PresenceConfiguration  # capacity 5, API agents (no console)
    alice: Agent
    admin: object


@pytest.fixture
def team(db) -> Team:
    chat = ServiceChannelFactory(key="chat", label="Chat")
    case = ServiceChannelFactory(key="case", label="Case")
    available = make_status("Available", [chat, case])
    busy = make_status("Busy", [])
    lunch = make_status("Lunch", [], online=False)
    config = PresenceConfigurationFactory(name="api agents", capacity=5, console_required=False)
    config.allowed_statuses.set([available, busy])
    support = QueueFactory(name="Support")
    sales = QueueFactory(name="Sales")
    alice = make_agent("alice", queues=[support], config=config)
    return Team(
        chat=chat,
        case=case,
        support=support,
        sales=sales,
        available=available,
        busy=busy,
        lunch=lunch,
        config=config,
        alice=alice,
        admin=make_user("root", superuser=True),
    )


# --- The agent's own presence -------------------------------------------------------------------


def test_agent_goes_available_then_offline(team):
    client = client_for(team.alice.user)

    available = client.put("/api/me/presence/", {"status": team.available.pk}, format="json")
    offline = client.put("/api/me/presence/", {"status": None}, format="json")

    assert available.status_code == 200
    body = available.json()
    assert (body["status"], body["online"], body["capacity"], body["used_capacity"]) == (
        "Available",
        True,
        5,
        0,
    )
    assert offline.json()["status"] == "Offline"
    assert offline.json()["online"] is False
    assert client.get("/api/me/presence/").json()["status_id"] is None


def test_a_status_the_configuration_does_not_allow_is_refused(team):
    services.set_presence(agent=team.alice, status=team.busy)

    response = client_for(team.alice.user).put(
        "/api/me/presence/", {"status": team.lunch.pk}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "detail": "Status 'Lunch' is not available to you.",
        "code": "status",
    }
    team.alice.refresh_from_db()
    assert team.alice.status == team.busy


def test_unknown_or_missing_status_is_a_field_error(team):
    client = client_for(team.alice.user)

    unknown = client.put("/api/me/presence/", {"status": 99999}, format="json")
    missing = client.put("/api/me/presence/", {}, format="json")
    wrong = client.put("/api/me/presence/", {"status": "away"}, format="json")

    assert unknown.status_code == 400
    assert unknown.json() == {"status": ['Invalid pk "99999" - object does not exist.']}
    assert missing.json() == {"status": ["This field is required."]}
    assert wrong.json() == {"status": ["Incorrect type. Expected pk value, received str."]}


def test_statuses_are_those_the_configuration_allows_plus_offline(team):
    response = client_for(team.alice.user).get("/api/me/statuses/")

    assert response.status_code == 200
    assert [(s["id"], s["name"], s["online"]) for s in response.json()] == [
        (None, "Offline", False),
        (team.available.pk, "Available", True),
        (team.busy.pk, "Busy", True),
    ]


def test_going_offline_returns_pending_offers_to_the_queue(team):
    # Given an offer Alice has not accepted
    services.set_presence(agent=team.alice, status=team.available)
    item = enqueue(team.support, team.chat, "Where is my order?")
    services.route_waiting_work()
    client = client_for(team.alice.user)
    assert [w["subject"] for w in client.get("/api/me/work/").json()] == ["Where is my order?"]
    # When she goes offline through the API
    client.put("/api/me/presence/", {"status": None}, format="json")
    # Then the offer is gone from her work and the item waits again
    assert client.get("/api/me/work/").json() == []
    item.refresh_from_db()
    assert item.status == WorkItemStatus.WAITING
    assert client.get("/api/me/presence/").json()["used_capacity"] == 0


# --- Agents (admins) ---------------------------------------------------------------------------


def test_admin_creates_an_agent_who_can_sign_in(team):
    response = client_for(team.admin).post(
        "/api/agents/",
        {
            "username": "bob",
            "password": "bob-secret-42",
            "first_name": "Bob",
            "presence_config": team.config.pk,
            "queues": [team.support.pk, team.sales.pk],
        },
        format="json",
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["username"], body["first_name"], body["capacity"], body["status"]) == (
        "bob",
        "Bob",
        5,
        None,
    )
    assert sorted(body["queues"]) == sorted([team.support.pk, team.sales.pk])
    assert "password" not in body
    assert get_user_model().objects.get(username="bob").check_password("bob-secret-42")


def test_agent_creation_refuses_taken_usernames_and_weak_passwords(team):
    client = client_for(team.admin)
    base = {"presence_config": team.config.pk, "password": "long-enough-1"}

    taken = client.post("/api/agents/", {**base, "username": "alice"}, format="json")
    weak = client.post(
        "/api/agents/", {**base, "username": "carol", "password": "short"}, format="json"
    )

    assert taken.status_code == 400
    assert taken.json() == {"username": ["A user with that username already exists."]}
    assert weak.status_code == 400
    assert weak.json() == {
        "password": ["This password is too short. It must contain at least 8 characters."]
    }
    assert Agent.objects.count() == 1


def test_new_presence_configuration_changes_capacity_but_never_below_what_is_held(team):
    # Given Alice holding three chats
    services.set_presence(agent=team.alice, status=team.available)
    for n in range(3):
        enqueue(team.support, team.chat, f"chat {n}")
    services.route_waiting_work()
    small = PresenceConfigurationFactory(name="small", capacity=2, console_required=False)
    # When an admin moves her to a configuration of capacity 2
    response = client_for(team.admin).patch(
        f"/api/agents/{team.alice.pk}/", {"presence_config": small.pk}, format="json"
    )
    # Then her configured capacity is 2, but the capacity in force stays at what she holds
    assert response.status_code == 200
    body = response.json()
    assert (body["presence_config"], body["configured_capacity"]) == (small.pk, 2)
    assert (body["capacity"], body["used_capacity"]) == (3, 3)


def test_admin_changes_an_agents_queues_and_name(team):
    response = client_for(team.admin).put(
        f"/api/agents/{team.alice.pk}/",
        {"queues": [team.sales.pk], "last_name": "Martin"},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["queues"] == [team.sales.pk]
    assert response.json()["last_name"] == "Martin"
    assert list(team.alice.queues.values_list("name", flat=True)) == ["Sales"]


def test_agents_are_not_deleted_through_the_api(team):
    response = client_for(team.admin).delete(f"/api/agents/{team.alice.pk}/")
    assert response.status_code == 405
    assert Agent.objects.filter(pk=team.alice.pk).exists()


# --- Presence configurations and statuses (admins) ---------------------------------------------


def test_new_configuration_capacity_reaches_its_agents(team):
    bob = make_agent("bob", config=team.config)

    response = client_for(team.admin).patch(
        f"/api/presence-configs/{team.config.pk}/", {"capacity": 8}, format="json"
    )

    assert response.status_code == 200
    assert sorted(response.json()["agents"]) == sorted([team.alice.pk, bob.pk])
    assert list(Agent.objects.order_by("id").values_list("configured_capacity", "capacity")) == [
        (8, 8),
        (8, 8),
    ]


def test_status_with_channels_is_created_and_narrowing_it_returns_offers(team):
    admin = client_for(team.admin)
    # Given a status made through the API, and Alice in it with a chat offer
    created = admin.post(
        "/api/presence-statuses/",
        {"name": "Chat and cases", "is_online": True, "channels": [team.chat.pk, team.case.pk]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    status = PresenceStatus.objects.get(pk=created.json()["id"])
    services.set_presence(agent=team.alice, status=status, check_allowed=False)
    item = enqueue(team.support, team.chat, "chat")
    services.route_waiting_work()
    # When the admin takes chat off the status
    response = admin.patch(
        f"/api/presence-statuses/{status.pk}/", {"channels": [team.case.pk]}, format="json"
    )
    # Then Alice keeps the status but her chat offer goes back to the queue
    assert response.status_code == 200
    assert response.json()["channels"] == [team.case.pk]
    work = AgentWork.objects.get(item=item)
    assert work.state == AgentWorkState.CANCELED
    item.refresh_from_db()
    assert item.status == WorkItemStatus.WAITING
    team.alice.refresh_from_db()
    assert (team.alice.status_id, team.alice.used_capacity) == (status.pk, 0)


def test_statuses_and_configurations_in_use_are_not_deleted(team):
    services.set_presence(agent=team.alice, status=team.available)
    admin = client_for(team.admin)

    status = admin.delete(f"/api/presence-statuses/{team.available.pk}/")
    config = admin.delete(f"/api/presence-configs/{team.config.pk}/")
    unused = admin.delete(f"/api/presence-statuses/{team.lunch.pk}/")

    assert status.status_code == 409
    assert status.json()["detail"] == (
        "Available cannot be deleted: it is used by 1 agent in this status."
    )
    assert config.status_code == 409
    assert config.json()["detail"] == "api agents cannot be deleted: it is used by 1 agent."
    assert unused.status_code == 204
    assert list(PresenceStatus.objects.order_by("name").values_list("name", flat=True)) == [
        "Available",
        "Busy",
    ]


def test_configuration_endpoints_are_for_admins_only(team):
    response = client_for(team.alice.user).patch(
        f"/api/presence-configs/{team.config.pk}/", {"capacity": 50}, format="json"
    )
    assert response.status_code == 403
    assert response.json() == {"detail": "Only administrators may do this."}
    team.config.refresh_from_db()
    assert team.config.capacity == 5


def test_offers_at_once_is_set_cleared_and_validated_through_the_api(team):
    admin = client_for(team.admin)
    url = f"/api/presence-configs/{team.config.pk}/"

    response = admin.patch(url, {"max_offers": 2}, format="json")
    assert (response.status_code, response.json()["max_offers"]) == (200, 2)
    team.config.refresh_from_db()
    assert team.config.max_offers == 2

    refused = admin.patch(url, {"max_offers": 0}, format="json")
    assert refused.status_code == 400
    assert "max_offers" in str(refused.json())
    team.config.refresh_from_db()
    assert team.config.max_offers == 2

    cleared = admin.patch(url, {"max_offers": None}, format="json")
    assert (cleared.status_code, cleared.json()["max_offers"]) == (200, None)
