"""Transfers of accepted work to a named agent and to anyone with a skill (services and API)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from routing import services
from routing.models import ActionLog, AgentWork, ItemSkill, Skill, WorkItem
from tests.api_support import client_for, make_supervisor
from tests.factories import enqueue, make_agent


@pytest.fixture
def team(world, api_config):
    """Alice holds an accepted chat in Support; Bob is in Support, Vic only in VIP."""
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.busy)
    vic = make_agent("vic", queues=[world.vip], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "Refund please")
    services.route_waiting_work()
    work = AgentWork.objects.get(item=item)
    assert work.agent_id == alice.pk
    services.accept_work(work_id=work.pk, agent=alice)
    return {"alice": alice, "bob": bob, "vic": vic, "item": item, "work": work}


def state_of(item_id: int) -> list[tuple[str, str]]:
    return list(
        AgentWork.objects.filter(item_id=item_id)
        .order_by("id")
        .values_list("agent__user__username", "state")
    )


def test_work_goes_to_a_named_agent_as_an_offer_with_the_note(team, world):
    services.set_presence(agent=team["bob"], status=world.available)

    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/",
        {"agent": team["bob"].pk, "note": "Customer wants a refund to the card."},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert response.json()["state"] == "transferred"
    assert state_of(team["item"].pk) == [("alice", "transferred"), ("bob", "pushed")]
    item = WorkItem.objects.get(pk=team["item"].pk)
    assert (item.status, item.queue_id) == ("offered", world.support.pk)
    assert (item.transfer_from, item.transfer_note) == (
        "alice",
        "Customer wants a refund to the card.",
    )
    bobs = client_for(team["bob"].user).get("/api/me/work/").json()
    assert bobs[0]["transfer"] == {"from": "alice", "note": "Customer wants a refund to the card."}
    assert bobs[0]["why"] == "Transferred to you by alice."
    assert list(ActionLog.objects.values_list("verb", "actor__username", "agent_id")) == [
        ("transfer_to_agent", "alice", team["bob"].pk)
    ]


@pytest.mark.parametrize(
    ("who", "code", "reason"),
    [
        ("bob", "channel", "bob cannot take this item: not available for Chat."),
        ("vic", "not_member", "vic cannot take this item: not a member of the queue."),
    ],
)
def test_an_agent_who_cannot_take_it_is_refused_with_409_and_nothing_changes(
    team, who, code, reason
):
    before = state_of(team["item"].pk)
    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/", {"agent": team[who].pk}, format="json"
    )

    assert response.status_code == 409
    assert response.json() == {"detail": reason, "code": code}
    assert state_of(team["item"].pk) == before
    assert WorkItem.objects.get(pk=team["item"].pk).transfer_note == ""
    assert not ActionLog.objects.exists()


def test_transferring_to_oneself_is_refused(team):
    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/", {"agent": team["alice"].pk}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "same_agent"


def test_work_goes_to_anyone_with_a_skill_and_waits_for_them(team, world):
    japanese = Skill.objects.create(name="Japanese")
    now = timezone.now()

    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/",
        {"skill": japanese.pk, "min_level": "4.5", "note": "Speaks Japanese only"},
        format="json",
    )

    assert response.status_code == 200, response.content
    item = WorkItem.objects.get(pk=team["item"].pk)
    assert (item.status, item.queue_id, item.transfer_note) == (
        "waiting",
        world.support.pk,
        "Speaks Japanese only",
    )
    assert item.enqueued_at >= now  # a new entry in line
    assert list(ItemSkill.objects.values_list("item_id", "skill__name", "min_level")) == [
        (item.pk, "Japanese", Decimal("4.50"))
    ]
    assert AgentWork.objects.get(pk=team["work"].pk).end_note == "Speaks Japanese only"


def test_a_skill_transfer_may_name_another_queue(team, world):
    japanese = Skill.objects.create(name="Japanese")
    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/",
        {"skill": japanese.pk, "queue": world.vip.pk},
        format="json",
    )
    assert response.status_code == 200
    assert WorkItem.objects.get(pk=team["item"].pk).queue_id == world.vip.pk
    assert AgentWork.objects.get(pk=team["work"].pk).end_note == ("To anyone with Japanese in VIP")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({}, "queue", "Say where the work goes: a queue, an agent or a skill."),
        (
            {"agent": 1, "queue": 1},
            "agent",
            "Transfer to an agent, or to a queue or skill, not both.",
        ),
        (
            {"skill": 1, "min_level": 100},
            "min_level",
            "Ensure this value is less than or equal to 99.99.",
        ),
    ],
)
def test_a_transfer_that_says_nowhere_or_two_places_is_refused(team, world, body, field, message):
    Skill.objects.create(pk=1, name="Japanese")
    body = {k: (team["bob"].pk if k == "agent" else v) for k, v in body.items()}
    if "queue" in body:
        body["queue"] = world.vip.pk
    response = client_for(team["alice"].user).post(
        f"/api/agent-work/{team['work'].pk}/transfer/", body, format="json"
    )
    assert response.status_code == 400
    assert response.json() == {field: [message]}
    assert state_of(team["item"].pk) == [("alice", "opened")]


def test_the_queue_transfer_carries_the_note_too(team, world):
    services.transfer_work(
        work_id=team["work"].pk, agent=team["alice"], queue=world.vip, note="VIP customer"
    )
    item = WorkItem.objects.get(pk=team["item"].pk)
    assert (item.queue_id, item.transfer_from, item.transfer_note) == (
        world.vip.pk,
        "alice",
        "VIP customer",
    )


def test_a_supervisor_hands_an_agents_work_to_another_agent(team, world):
    services.set_presence(agent=team["bob"], status=world.available)
    sam = make_supervisor("sam", world.support)

    response = client_for(sam).post(
        f"/api/supervisor/work/{team['work'].pk}/transfer/",
        {"agent": team["bob"].pk, "note": "Alice is leaving for the day"},
        format="json",
    )

    assert response.status_code == 200, response.content
    assert state_of(team["item"].pk) == [("alice", "transferred"), ("bob", "pushed")]
    bobs = AgentWork.objects.get(item=team["item"], agent=team["bob"])
    assert bobs.routing_reason["text"] == "Transferred to you from alice by supervisor sam."
    assert list(ActionLog.objects.values_list("verb", "actor__username")) == [
        ("transfer_to_agent", "sam")
    ]
    # outside the queues sam supervises: as if there were no such agent
    outside = client_for(sam).post(
        f"/api/supervisor/work/{team['work'].pk}/transfer/",
        {"agent": team["vic"].pk},
        format="json",
    )
    assert outside.status_code == 404
