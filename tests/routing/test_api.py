"""The routing REST API: who may call what, how bad input is refused, and the work flow through it.

Routing passes are run by hand (ROUTING_MODE manual, from tests/routing/conftest.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone
from drf_spectacular.validation import validate_schema
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from omnirouter import roles
from presence.models import Agent
from routing import services
from routing.models import (
    AgentWork,
    AgentWorkState,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from tests.api_support import client_for, make_supervisor, make_user
from tests.factories import QueueFactory, RoutingConfigurationFactory, enqueue, make_agent


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # Users are made with passwords (as people make them); hashing them slowly proves nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Center:
    world: object
    alice: Agent
    bob: Agent
    admin: object
    intake: object
    supervisor: object  # supervises Support only


@pytest.fixture
def center(world, api_config) -> Center:
    alice = make_agent(
        "alice", queues=[world.support, world.vip], config=api_config, status=world.available
    )
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    return Center(
        world=world,
        alice=alice,
        bob=bob,
        admin=make_user("root", superuser=True),
        intake=make_user("crm", group=roles.INTAKE),
        supervisor=make_supervisor("sam", world.support),
    )


def offer_to(agent: Agent, center: Center, subject: str = "Refund", **kwargs) -> AgentWork:
    """An item in Support offered to ``agent`` only (the other agent is busy)."""
    others = Agent.objects.exclude(pk=agent.pk)
    for other in others:
        services.set_presence(agent=other, status=center.world.busy)
    enqueue(center.world.support, center.world.chat, subject)
    services.route_waiting_work(**kwargs)
    return AgentWork.objects.get(agent=agent, item__subject=subject)


# --- Who may call what -----------------------------------------------------------------------

ROLES = ["anonymous", "agent", "intake", "supervisor", "admin"]

# family -> (method, path, expected status for each role in ROLES order)
MATRIX = {
    "configuration": ("get", "/api/routing-configs/", [401, 403, 403, 403, 200]),
    "intake create": ("post", "/api/work-items/", [401, 403, 201, 403, 201]),
    "intake read": ("get", "/api/work-items/", [401, 403, 200, 200, 200]),
    "agent": ("get", "/api/me/work/", [401, 200, 403, 403, 403]),
    "supervisor": ("get", "/api/supervisor/snapshot/", [401, 403, 403, 200, 200]),
}


@pytest.mark.parametrize("family", list(MATRIX))
def test_each_role_gets_the_right_answer_from_each_endpoint_family(center, family):
    # Given a user of each role
    users = {
        "anonymous": None,
        "agent": center.alice.user,
        "intake": center.intake,
        "supervisor": center.supervisor,
        "admin": center.admin,
    }
    method, path, expected = MATRIX[family]
    body = {
        "queue": center.world.support.pk,
        "channel": center.world.chat.pk,
        "subject": "From the CRM",
    }
    # When each calls the endpoint
    answers = {}
    for role in ROLES:
        client = client_for(users[role])
        response = getattr(client, method)(path, body if method == "post" else None, format="json")
        answers[role] = response.status_code
        if response.status_code == 401:
            # Then anonymous callers are challenged for a token...
            assert response["WWW-Authenticate"] == "Token"
        if response.status_code == 403:
            # ...and the wrong role is told why
            assert response.json()["detail"].startswith("Only ")
    # Then each role gets exactly its answer
    assert answers == dict(zip(ROLES, expected, strict=True))


def test_wrong_role_is_told_which_role_it_needs(center):
    response = client_for(center.intake).get("/api/routing-configs/")
    assert response.status_code == 403
    assert response.json() == {"detail": "Only administrators may do this."}

    response = client_for(center.intake).get("/api/me/presence/")
    assert response.json() == {"detail": "Only agents may do this: your user has no agent record."}


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("accept", {}),
        ("decline", {"reason": ""}),
        ("close", {"note": "done"}),
        ("transfer", {"queue": 0}),  # queue replaced below
    ],
)
def test_an_agent_cannot_act_on_another_agents_work(center, action, body):
    # Given an offer to Alice, and one accepted by her
    offered = offer_to(center.alice, center, "offered")
    accepted = offer_to(center.alice, center, "accepted")
    services.accept_work(work_id=accepted.pk, agent=center.alice)
    target = accepted if action in ("close", "transfer") else offered
    if action == "transfer":
        body = {"queue": center.world.vip.pk}
    before = list(AgentWork.objects.order_by("id").values_list("id", "state", "agent_id"))
    loads = list(Agent.objects.order_by("id").values_list("id", "used_capacity", "open_count"))
    # When Bob tries to act on it
    response = client_for(center.bob.user).post(
        f"/api/agent-work/{target.pk}/{action}/", body, format="json"
    )
    # Then it does not exist for him, and nothing changed
    assert response.status_code == 404
    assert response.json()["detail"] == f"No work {target.pk} of yours."
    assert list(AgentWork.objects.order_by("id").values_list("id", "state", "agent_id")) == before
    assert (
        list(Agent.objects.order_by("id").values_list("id", "used_capacity", "open_count")) == loads
    )


def test_token_made_by_the_management_command_authenticates(center):
    # Given a token made the documented way
    out = StringIO()
    call_command("drf_create_token", "alice", stdout=out)
    key = Token.objects.get(user=center.alice.user).key
    assert key in out.getvalue()
    # When the agent calls with it, and someone calls with a wrong one
    client = APIClient()
    good = client.get("/api/me/presence/", HTTP_AUTHORIZATION=f"Token {key}")
    bad = client.get("/api/me/presence/", HTTP_AUTHORIZATION="Token not-a-token")
    # Then the token is the agent, and a wrong token is refused
    assert good.status_code == 200
    assert good.json()["agent_id"] == center.alice.pk
    assert good.json()["status"] == "Available"
    assert bad.status_code == 401
    assert bad.json() == {"detail": "Invalid token."}


# --- Bad input ----------------------------------------------------------------------------------


def test_malformed_json_is_refused_and_nothing_is_written(center):
    response = client_for(center.intake).post(
        "/api/work-items/", '{"queue": 1, "subject": ', content_type="application/json"
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("JSON parse error")
    assert WorkItem.objects.count() == 0


def _nested_lists(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subject": "x", "payload": {"note": "a\x00b"}}, "payload.note"),
        ({"subject": "x", "payload": {"a\x00": 1}}, "payload"),
        ({"subject": "x", "payload": {"deep": _nested_lists(40)}}, "payload.deep" + ".0" * 30),
    ],
)
def test_nul_bytes_and_deep_nesting_are_refused_naming_the_field(center, body, field):
    body = {"queue": center.world.support.pk, "channel": center.world.chat.pk, **body}

    response = client_for(center.intake).post("/api/work-items/", body, format="json")

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert WorkItem.objects.count() == 0


def test_json_nested_deeper_than_the_parser_goes_is_400_not_500(center):
    response = client_for(center.intake).post(
        "/api/work-items/", "[" * 5000 + "]" * 5000, content_type="application/json"
    )

    assert response.status_code == 400
    assert "Nested deeper than" in response.json()["detail"]
    assert WorkItem.objects.count() == 0


def test_wrong_types_are_refused_with_each_field_named(center):
    response = client_for(center.intake).post(
        "/api/work-items/",
        {
            "queue": "abc",
            "channel": center.world.chat.pk,
            "subject": "x",
            "priority": "high",
            "payload": "a string",
        },
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {"queue", "priority", "payload"}
    assert errors["priority"] == ["A valid integer is required."]
    assert errors["queue"] == ["Incorrect type. Expected pk value, received str."]
    assert errors["payload"] == ['Expected a dictionary of items but got type "str".']
    assert WorkItem.objects.count() == 0


def test_unknown_queue_and_out_of_range_priority_are_refused(center):
    response = client_for(center.intake).post(
        "/api/work-items/",
        {"queue": 999999, "channel": center.world.chat.pk, "subject": "x", "priority": 11},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "queue": ['Invalid pk "999999" - object does not exist.'],
        "priority": ["Ensure this value is less than or equal to 10."],
    }
    assert WorkItem.objects.count() == 0


def test_intake_names_a_preferred_agent_by_id_or_username_and_the_item_shows_it(center):
    intake = client_for(center.intake)
    body = {"queue": center.world.support.pk, "channel": center.world.chat.pk, "subject": "vip"}
    before = timezone.now().replace(microsecond=0)

    by_name = intake.post(
        "/api/work-items/",
        {**body, "preferred_agent": "bob", "preferred_for_seconds": 120},
        format="json",
    )
    by_id = intake.post(
        "/api/work-items/", {**body, "preferred_agent": str(center.alice.pk)}, format="json"
    )

    assert (by_name.status_code, by_id.status_code) == (201, 201)
    first, second = by_name.json(), by_id.json()
    assert (first["preferred_agent"], first["preferred_agent_username"]) == (center.bob.pk, "bob")
    until = datetime.fromisoformat(first["preferred_until"])
    assert before + timedelta(seconds=120) <= until <= timezone.now() + timedelta(seconds=120)
    # Without a time: ROUTING_PREFERRED_AGENT_SECONDS (60).
    assert second["preferred_agent_username"] == "alice"
    created = WorkItem.objects.get(pk=second["id"])
    assert created.preferred_until == created.created_at + timedelta(seconds=60)
    detail = intake.get(f"/api/work-items/{first['id']}/").json()
    assert (detail["preferred_agent_username"], detail["preferred_until"]) == (
        "bob",
        first["preferred_until"],
    )
    # An item without one says so.
    plain = intake.post("/api/work-items/", body, format="json").json()
    assert (
        plain["preferred_agent"],
        plain["preferred_agent_username"],
        plain["preferred_until"],
    ) == (
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            {"preferred_agent": "nobody"},
            {"preferred_agent": ["No agent with the id or username nobody."]},
        ),
        (
            {"preferred_agent": "999999"},
            {"preferred_agent": ["No agent with the id or username 999999."]},
        ),
        # Digits past a bigint, or not ASCII, are looked up as a username.
        (
            {"preferred_agent": "9" * 40},
            {"preferred_agent": [f"No agent with the id or username {'9' * 40}."]},
        ),
        (
            {"preferred_agent": "\u00b2"},
            {"preferred_agent": ["No agent with the id or username \u00b2."]},
        ),
        (
            {"preferred_agent": "bob", "preferred_for_seconds": -5},
            {"preferred_for_seconds": ["Wait at least one second for the preferred agent."]},
        ),
        (
            {"preferred_agent": "bob", "preferred_for_seconds": 0},
            {"preferred_for_seconds": ["Wait at least one second for the preferred agent."]},
        ),
    ],
)
def test_a_preferred_agent_that_cannot_be_is_refused_by_field(center, extra, expected):
    body = {"queue": center.world.support.pk, "channel": center.world.chat.pk, "subject": "x"}

    response = client_for(center.intake).post("/api/work-items/", {**body, **extra}, format="json")

    assert (response.status_code, response.json()) == (400, expected)
    assert WorkItem.objects.count() == 0


def test_a_preferred_agent_outside_the_queue_or_a_time_without_one_is_refused(center):
    intake = client_for(center.intake)
    body = {"queue": center.world.vip.pk, "channel": center.world.chat.pk, "subject": "x"}

    outsider = intake.post("/api/work-items/", {**body, "preferred_agent": "bob"}, format="json")
    no_agent = intake.post("/api/work-items/", {**body, "preferred_for_seconds": 30}, format="json")

    assert outsider.status_code == 400
    assert outsider.json()["detail"] == (
        "bob is not a member of the queue VIP, so cannot be its preferred agent."
    )
    assert no_agent.status_code == 400
    assert no_agent.json()["detail"] == (
        "A time to wait for the preferred agent needs a preferred agent."
    )
    assert WorkItem.objects.count() == 0


def test_canceling_twice_answers_conflict(center):
    client = client_for(center.intake)
    created = client.post(
        "/api/work-items/",
        {"queue": center.world.support.pk, "channel": center.world.chat.pk, "subject": "x"},
        format="json",
    ).json()

    first = client.post(f"/api/work-items/{created['id']}/cancel/")
    second = client.post(f"/api/work-items/{created['id']}/cancel/")

    assert first.status_code == 200
    assert first.json()["status"] == "canceled"
    assert second.status_code == 409
    assert second.json() == {
        "detail": f"Item {created['id']} has already ended (Canceled).",
        "code": "ended",
    }


def test_accepting_an_expired_offer_answers_conflict(center):
    # Given an offer made an hour ago with a 30 s push timeout, not yet swept
    work = offer_to(center.alice, center, now=timezone.now() - timedelta(hours=1))
    # When Alice accepts it now
    response = client_for(center.alice.user).post(f"/api/agent-work/{work.pk}/accept/")
    # Then she is told it timed out, and it is still hers to lose to the sweep
    assert response.status_code == 409
    assert response.json() == {"detail": "This offer has timed out.", "code": "expired"}
    work.refresh_from_db()
    assert work.state == AgentWorkState.PUSHED


def test_accepting_twice_answers_already_accepted(center):
    work = offer_to(center.alice, center)
    client = client_for(center.alice.user)

    assert client.post(f"/api/agent-work/{work.pk}/accept/").status_code == 200
    again = client.post(f"/api/agent-work/{work.pk}/accept/")

    assert again.status_code == 409
    assert again.json() == {
        "detail": "You have already accepted this work.",
        "code": "already_accepted",
    }


def test_list_filters_are_validated(center):
    response = client_for(center.admin).get("/api/work-items/?status=lost&queue=x")
    assert response.status_code == 400
    assert set(response.json()) == {"status", "queue"}


# --- The flow through the API -----------------------------------------------------------------


def test_configure_take_in_route_accept_and_close_through_the_api(center, api_config):
    admin = client_for(center.admin)
    # Given a routing configuration and a queue made through the API, with Alice as member
    config = admin.post(
        "/api/routing-configs/",
        {"name": "Returns", "routing_priority": 1, "push_timeout_seconds": 60, "size_units": 2},
        format="json",
    )
    assert config.status_code == 201, config.json()
    queue = admin.post(
        "/api/queues/",
        {
            "name": "Returns",
            "routing_config": config.json()["id"],
            "members": [center.alice.pk],
            "supervisors": [center.supervisor.pk],
        },
        format="json",
    )
    assert queue.status_code == 201, queue.json()
    assert queue.json()["members"] == [center.alice.pk]
    services.set_presence(agent=center.bob, status=center.world.busy)

    # When the CRM sends an item
    created = client_for(center.intake).post(
        "/api/work-items/",
        {
            "queue": queue.json()["id"],
            "channel": center.world.chat.pk,
            "subject": "Return a parcel",
            "priority": 3,
            "payload": {"order": "A-17"},
        },
        format="json",
    )
    # Then it waits, sized by its configuration
    assert created.status_code == 201
    item = created.json()
    assert item["status"] == "waiting"
    assert item["queue"] == queue.json()["id"]
    assert item["subject"] == "Return a parcel"
    assert item["priority"] == 3
    assert item["routing_priority"] == 1
    assert item["payload"] == {"order": "A-17"}
    assert item["size"] == {"units": 2, "percent": None}

    # When routing runs, Alice sees the offer
    services.route_waiting_work()
    agent = client_for(center.alice.user)
    work = agent.get("/api/me/work/").json()
    assert [(w["item_id"], w["state"], w["subject"]) for w in work] == [
        (item["id"], "pushed", "Return a parcel")
    ]
    assert agent.get("/api/me/presence/").json()["used_capacity"] == 2

    # When she accepts and closes it
    accepted = agent.post(f"/api/agent-work/{work[0]['id']}/accept/")
    closed = agent.post(
        f"/api/agent-work/{work[0]['id']}/close/", {"note": "Label sent"}, format="json"
    )

    # Then the item is closed, its history tells the story, and her capacity is free again
    assert accepted.json()["state"] == "opened"
    assert closed.json()["state"] == "closed"
    assert agent.get("/api/me/work/").json() == []
    presence = agent.get("/api/me/presence/").json()
    assert (presence["used_capacity"], presence["open_count"]) == (0, 0)
    detail = client_for(center.intake).get(f"/api/work-items/{item['id']}/").json()
    assert detail["status"] == "closed"
    assert detail["waiting_because"] is None
    assert [(h["state"], h["agent_username"], h["note"]) for h in detail["history"]] == [
        ("closed", "alice", "Label sent")
    ]
    assert detail["history"][0]["why"]
    assert detail["history"][0]["opened_at"] is not None


def test_transfer_puts_the_item_in_line_in_the_other_queue(center):
    # Given work Alice has accepted in Support
    work = offer_to(center.alice, center)
    services.accept_work(work_id=work.pk, agent=center.alice)
    services.set_presence(agent=center.alice, status=center.world.busy)
    # When she transfers it to VIP
    response = client_for(center.alice.user).post(
        f"/api/agent-work/{work.pk}/transfer/", {"queue": center.world.vip.pk}, format="json"
    )
    # Then her part ends and the item waits in VIP, saying why
    assert response.status_code == 200
    assert response.json()["state"] == "transferred"
    detail = client_for(center.admin).get(f"/api/work-items/{work.item_id}/").json()
    assert (detail["status"], detail["queue"]) == ("waiting", center.world.vip.pk)
    assert detail["routing_priority"] == 1
    assert detail["waiting_because"] == "No one can take it now: 1 not available for Chat."
    assert [h["state"] for h in detail["history"]] == ["transferred"]


def test_decline_through_the_api_returns_the_item_with_the_reason(center):
    work = offer_to(center.alice, center)
    response = client_for(center.alice.user).post(
        f"/api/agent-work/{work.pk}/decline/", {"reason": "Wrong language"}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["state"] == "declined"
    detail = client_for(center.admin).get(f"/api/work-items/{work.item_id}/").json()
    assert detail["status"] == "waiting"
    assert detail["history"][0]["decline_reason"] == "Wrong language"


def test_intake_reads_its_own_items_and_supervisors_their_queues(center):
    # Given an item from the CRM in Support, one from another intake client in VIP
    mine = services.enqueue_work(
        queue=center.world.support, channel=center.world.chat, subject="a", created_by=center.intake
    )
    other_client = make_user("shop", group=roles.INTAKE)
    theirs = services.enqueue_work(
        queue=center.world.vip, channel=center.world.chat, subject="b", created_by=other_client
    )

    def ids(user, query=""):
        return [i["id"] for i in client_for(user).get(f"/api/work-items/{query}").json()["results"]]

    # Then each sees what is theirs to see
    assert ids(center.intake) == [mine.pk]
    assert ids(center.supervisor) == [mine.pk]  # supervises Support only
    assert ids(center.admin) == [theirs.pk, mine.pk]
    assert ids(center.admin, f"?queue={center.world.vip.pk}") == [theirs.pk]
    assert ids(center.admin, "?status=closed") == []
    # And an item out of sight does not exist for them
    assert client_for(center.intake).get(f"/api/work-items/{theirs.pk}/").status_code == 404
    assert (
        client_for(center.supervisor).post(f"/api/work-items/{theirs.pk}/cancel/").status_code
        == 404
    )
    assert WorkItem.objects.get(pk=theirs.pk).status == WorkItemStatus.WAITING


def test_waiting_item_says_why_it_waits(center):
    services.set_presence(agent=center.alice, status=None)
    services.set_presence(agent=center.bob, status=None)
    item = enqueue(center.world.support, center.world.chat, "late night", created_by=center.intake)

    detail = client_for(center.intake).get(f"/api/work-items/{item.pk}/")

    assert detail.json()["waiting_because"] == "No one can take it now: 2 offline."


# --- Configuration ----------------------------------------------------------------------------


def test_new_routing_priority_reaches_waiting_items(center):
    # Given items waiting in Support (routing priority 2) and nobody online
    services.set_presence(agent=center.alice, status=None)
    services.set_presence(agent=center.bob, status=None)
    first = enqueue(center.world.support, center.world.chat, "one")
    second = enqueue(center.world.support, center.world.chat, "two")
    config = center.world.support.routing_config
    # When an admin makes Support's configuration the most urgent
    response = client_for(center.admin).patch(
        f"/api/routing-configs/{config.pk}/", {"routing_priority": 1}, format="json"
    )
    # Then the waiting items carry the new routing priority
    assert response.status_code == 200
    assert response.json()["routing_priority"] == 1
    assert sorted(
        WorkItem.objects.filter(pk__in=[first.pk, second.pk]).values_list(
            "routing_priority", flat=True
        )
    ) == [1, 1]


def test_size_in_units_and_percent_at_once_is_refused(center):
    response = client_for(center.admin).post(
        "/api/routing-configs/",
        {"name": "both", "size_units": 2, "size_percent": 50},
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "size_percent": ["Give the item size in units or as a percentage of capacity, not both."]
    }
    assert not RoutingConfiguration.objects.filter(name="both").exists()


def test_queue_members_and_supervisors_are_writable(center):
    queue = center.world.vip
    response = client_for(center.admin).patch(
        f"/api/queues/{queue.pk}/",
        {"members": [center.bob.pk], "supervisors": [center.supervisor.pk]},
        format="json",
    )
    assert response.status_code == 200
    assert response.json()["members"] == [center.bob.pk]
    assert list(queue.members.values_list("pk", flat=True)) == [center.bob.pk]
    assert list(queue.supervisors.values_list("pk", flat=True)) == [center.supervisor.pk]


def test_deleting_configuration_in_use_answers_conflict(center):
    enqueue(center.world.support, center.world.chat, "keeps the queue busy")
    admin = client_for(center.admin)

    queue = admin.delete(f"/api/queues/{center.world.support.pk}/")
    config = admin.delete(f"/api/routing-configs/{center.world.support.routing_config_id}/")
    channel = admin.delete(f"/api/channels/{center.world.chat.pk}/")

    assert queue.status_code == 409
    assert queue.json() == {
        "detail": "Support cannot be deleted: it is used by 1 work item.",
        "code": "in_use",
    }
    assert config.status_code == 409
    assert config.json()["detail"] == "std cannot be deleted: it is used by 1 queue."
    assert channel.status_code == 409
    assert channel.json()["detail"] == "Chat cannot be deleted: it is used by 1 work item."
    assert Queue.objects.filter(pk=center.world.support.pk).exists()
    assert ServiceChannel.objects.filter(pk=center.world.chat.pk).exists()


def test_unused_configuration_can_be_deleted(center):
    spare = QueueFactory(name="Spare", routing_config=RoutingConfigurationFactory(name="spare"))
    response = client_for(center.admin).delete(f"/api/queues/{spare.pk}/")
    assert response.status_code == 204
    assert not Queue.objects.filter(pk=spare.pk).exists()


# --- Supervisor snapshot ------------------------------------------------------------------------


def test_snapshot_shows_only_supervised_queues_and_their_agents(center):
    # Given two items waiting in Support since 9:00 and 9:01, one in VIP, nobody online
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    services.set_presence(agent=center.alice, status=None)
    services.set_presence(agent=center.bob, status=None)
    enqueue(center.world.support, center.world.chat, "a", now=start)
    enqueue(center.world.support, center.world.chat, "b", now=start + timedelta(minutes=1))
    enqueue(center.world.vip, center.world.chat, "c", now=start)
    # When Sam (supervises Support) and the admin look at 9:02
    with time_machine.travel(start + timedelta(minutes=2), tick=False):
        sam = client_for(center.supervisor).get("/api/supervisor/snapshot/").json()
        admin = client_for(center.admin).get("/api/supervisor/snapshot/").json()
    # Then Sam sees Support and its members only, with its waits in seconds
    assert [q["name"] for q in sam["queues"]] == ["Support"]
    support = sam["queues"][0]
    assert (support["waiting"], support["longest_wait_seconds"]) == (2, 120)
    assert support["average_wait_seconds"] == 90
    assert [a["username"] for a in sam["agents"]] == ["alice", "bob"]
    assert sam["agents"][0]["online"] is False
    assert sam["agents"][0]["capacity"] == 10
    # And the admin sees every queue
    assert [q["name"] for q in admin["queues"]] == ["Support", "VIP"]


# --- The browsable API and the schema --------------------------------------------------------


def test_schema_is_valid_openapi_and_lists_the_endpoints(db, client):
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    validate_schema(schema)
    assert {
        "/api/channels/",
        "/api/queues/",
        "/api/routing-configs/",
        "/api/presence-statuses/",
        "/api/presence-configs/",
        "/api/agents/",
        "/api/work-items/",
        "/api/work-items/{id}/",
        "/api/work-items/{id}/cancel/",
        "/api/me/presence/",
        "/api/me/work/",
        "/api/me/statuses/",
        "/api/agent-work/{id}/accept/",
        "/api/agent-work/{id}/decline/",
        "/api/agent-work/{id}/close/",
        "/api/agent-work/{id}/transfer/",
        "/api/supervisor/snapshot/",
    } <= set(schema["paths"])


def test_docs_pages_are_served_without_a_cdn(db, client):
    swagger = client.get("/api/docs/")
    redoc = client.get("/api/docs/redoc/")
    assert swagger.status_code == 200
    assert redoc.status_code == 200
    assert b"drf_spectacular_sidecar/swagger-ui-dist" in swagger.content
    assert b"cdn.jsdelivr" not in swagger.content


def test_browsable_api_pages_render(center):
    work = offer_to(center.alice, center)
    pages = [
        (center.admin, "/api/channels/"),
        (center.admin, "/api/queues/"),
        (center.admin, "/api/work-items/"),
        (center.admin, f"/api/work-items/{work.item_id}/"),
        (center.admin, "/api/agents/"),
        (center.admin, "/api/presence-configs/"),
        (center.admin, "/api/supervisor/snapshot/"),
        (center.alice.user, "/api/me/work/"),
        (center.alice.user, "/api/me/presence/"),
        (center.alice.user, f"/api/agent-work/{work.pk}/decline/"),  # GET: 405, with the form
        (None, "/api/auth/login/"),
    ]
    answers = {
        url: client_for(user).get(url, HTTP_ACCEPT="text/html").status_code for user, url in pages
    }
    assert answers == {url: 405 if "agent-work" in url else 200 for _, url in pages}


def test_lists_cost_a_fixed_number_of_queries(center, django_assert_max_num_queries):
    # Given 30 items, 20 of them offered to Alice and Bob
    for n in range(30):
        enqueue(center.world.support, center.world.chat, f"item {n}", created_by=center.intake)
    services.route_waiting_work()
    intake, alice = client_for(center.intake), client_for(center.alice.user)
    # Then listing them costs the same few queries as listing one
    with django_assert_max_num_queries(6):
        assert len(intake.get("/api/work-items/?limit=100").json()["results"]) == 30
    # (one of them: the skills the items need, for all of them)
    with django_assert_max_num_queries(6):
        assert len(alice.get("/api/me/work/").json()) == 10


# --- Skills at intake ----------------------------------------------------------------------------


def test_intake_requires_skills_by_name_or_id_and_the_item_shows_them(center):
    billing = Skill.objects.create(name="Billing")
    japanese = Skill.objects.create(name="Japanese", attribute="language", value="ja")
    spanish = Skill.objects.create(name="Spanish")
    now = timezone.now()
    with time_machine.travel(now, tick=False):
        response = client_for(center.intake).post(
            "/api/work-items/",
            {
                "queue": center.world.support.pk,
                "channel": center.world.chat.pk,
                "subject": "factura",
                "payload": {"language": "ja"},
                "skills": [
                    {"skill": "billing", "min_level": 5},
                    {"skill": spanish.pk, "additional": True, "drop_after_seconds": 60},
                ],
            },
            format="json",
        )

    assert response.status_code == 201, response.json()
    drops_at = (now + timedelta(seconds=60)).isoformat().replace("+00:00", "Z")
    assert response.json()["skills"] == [
        {
            "skill": billing.pk,
            "name": "Billing",
            "min_level": "5.00",
            "additional": False,
            "drop_after_seconds": None,
            "drops_at": None,
            "in_force": True,
        },
        {
            "skill": spanish.pk,
            "name": "Spanish",
            "min_level": "0.00",
            "additional": True,
            "drop_after_seconds": 60,
            "drops_at": drops_at,
            "in_force": True,
        },
        {
            "skill": japanese.pk,
            "name": "Japanese",
            "min_level": "0.00",
            "additional": False,
            "drop_after_seconds": None,
            "drops_at": None,
            "in_force": True,
        },
    ]
    with time_machine.travel(now + timedelta(seconds=60), tick=False):
        later = client_for(center.intake).get(f"/api/work-items/{response.json()['id']}/")
    assert [s["in_force"] for s in later.json()["skills"]] == [True, False, True]


@pytest.mark.parametrize(
    ("skills", "message"),
    [
        ([{"skill": "Klingon"}], "No skill named “Klingon”."),
        ([{"skill": 999999}], "No skill with id 999999."),
        ([{"min_level": 3}], "Each skill says which: a skill id or name."),
        (
            [{"skill": "Billing", "min_level": 120}],
            "A skill level is from 0 to 99.99; 120.00 is out of range.",
        ),
        (
            [{"skill": "Billing", "min_level": "lots"}],
            "A skill level is a number from 0 to 99.99, not “lots”.",
        ),
        (
            [{"skill": "Billing", "min_level": "NaN"}],
            "A skill level is a number from 0 to 99.99, not “NaN”.",
        ),
        ([{"skill": 2**70}], f"No skill with id {2**70}."),
        (
            [{"skill": "Billing", "additional": True}],
            "An additional skill says after how many seconds it is dropped.",
        ),
        (
            [{"skill": "Billing", "drop_after_seconds": 30}],
            "Only an additional skill is dropped after a wait.",
        ),
    ],
)
def test_bad_skills_at_intake_are_refused_naming_the_problem(center, skills, message):
    Skill.objects.create(name="Billing")
    response = client_for(center.intake).post(
        "/api/work-items/",
        {
            "queue": center.world.support.pk,
            "channel": center.world.chat.pk,
            "subject": "x",
            "skills": skills,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {"skills": [message]}
    assert WorkItem.objects.count() == 0


def test_a_skill_named_twice_at_intake_is_refused(center):
    billing = Skill.objects.create(name="Billing")
    response = client_for(center.intake).post(
        "/api/work-items/",
        {
            "queue": center.world.support.pk,
            "channel": center.world.chat.pk,
            "subject": "x",
            "skills": [{"skill": "Billing"}, {"skill": billing.pk, "min_level": 2}],
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Skill {billing.pk} is required twice; name each skill once.",
        "code": "skills",
    }
    assert WorkItem.objects.count() == 0
