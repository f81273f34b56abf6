"""Queries per call on the hot paths, pinned exactly on each database path.

A change in these numbers is a change in cost: look at it before updating the number (and the
"Query counts" table in bench/README.md). Counts are taken inside the test's transaction, so each
service's ``atomic()`` shows as a SAVEPOINT and a RELEASE (two queries a production call, which
opens a real transaction instead, does not make). Runs on PostgreSQL (raw SQL in the routing
pass) and on SQLite (the ORM branch of the embedded run), each with its own numbers where the
paths differ.
"""

from __future__ import annotations

import pytest
from django.db import connection

from presence.models import Agent
from routing import services
from routing.models import AgentSkill, AgentWork, Skill
from routing.services.skills import need, require_skills
from supervisor.selectors import all_queues_scope, skills_backlog
from tests.factories import PresenceConfigurationFactory, enqueue, make_agent
from tests.routing.scenario import at, route

pytestmark = pytest.mark.usefixtures("fast_passwords")


def on(*, postgresql: int, sqlite: int) -> int:
    return {"postgresql": postgresql, "sqlite": sqlite}[connection.vendor]


@pytest.fixture
def agents(world) -> list[Agent]:
    """Five agents of the support queue with room for 10 units each, online for chat."""
    config = PresenceConfigurationFactory(name="api agents", capacity=10, console_required=False)
    return [
        make_agent(f"agent{i}", queues=[world.support], config=config, status=world.available)
        for i in range(5)
    ]


def waiting(world, count: int) -> None:
    for i in range(count):
        enqueue(world.support, world.chat, f"item {i}", now=at(0))


def test_a_routing_batch_of_10_items_for_5_agents(world, agents, django_assert_num_queries):
    """One batch: pass lock, agents with room (locked), claim, configurations, refusals,
    preferred agents, then the offers written in a few statements. SQLite reads its rows back
    through the ORM (more statements, same count for any batch size)."""
    waiting(world, 10)

    with django_assert_num_queries(on(postgresql=10, sqlite=14)):
        assert route(1).offers == 10

    assert AgentWork.objects.filter(state="pushed").count() == 10


@pytest.mark.parametrize(
    ("expired", "queries"),
    [(1, 13), (50, 405)],
)
def test_expiring_offers_costs_eight_queries_per_offer(
    world, agents, expired, queries, django_assert_num_queries
):
    """``expire_offers`` is row by row today: 5 queries for the batch (due offers, savepoint,
    agent locks, offer locks, release) plus 8 per expired offer (end the work, free the agent,
    read their load and the work's item, queue and channel for the events, return the item and
    read its queue). So 5 + 8n: 13 for one offer, 405 for 50, on both databases."""
    waiting(world, expired)
    assert route(1).offers == expired

    with django_assert_num_queries(queries):
        assert services.expire_offers(now=at(31)) == expired


def test_expiring_nothing_costs_one_query(world, agents, django_assert_num_queries):
    waiting(world, 3)
    route(1)

    with django_assert_num_queries(1):
        assert services.expire_offers(now=at(30)) == 0


def test_a_heartbeat_costs_two_queries(world, agents, django_assert_num_queries):
    """Was the console stale (a pass is due if so), then the new time."""
    with django_assert_num_queries(2):
        services.touch_console(agent=agents[0], now=at(1))


def test_accept_and_decline(world, agents, django_assert_num_queries):
    """Accept is a compare-and-set (5 with the reads for its events); decline reads the decline
    reasons, locks the agent and the work, frees the capacity and returns the item (10). The
    agent comes with its presence configuration, as the console's actions read it."""
    waiting(world, 2)
    route(1)
    first, second = AgentWork.objects.select_related("agent__presence_config").order_by("id")

    with django_assert_num_queries(5):
        services.accept_work(work_id=first.pk, agent=first.agent, now=at(2))
    with django_assert_num_queries(10):
        services.decline_work(work_id=second.pk, agent=second.agent, now=at(2))


def test_the_skills_backlog_is_two_queries_whatever_the_backlog(
    world, agents, django_assert_num_queries
):
    """The supervisor's skills backlog (part of every snapshot): one grouped query over the
    waiting items' requirements, one for the agents online with those skills. Its figures:
    waiting, longest wait, agents online with the skill, and items no online member of their
    queue has the skill for at the level asked."""
    japanese, french = Skill.objects.create(name="Japanese"), Skill.objects.create(name="French")
    AgentSkill.objects.create(agent=agents[0], skill=japanese, level=5)
    AgentSkill.objects.create(agent=agents[1], skill=japanese, level=2)
    for n in range(3):
        require_skills(
            enqueue(world.support, world.chat, f"ja {n}", now=at(n)), [need(japanese.pk, 4)]
        )
    require_skills(enqueue(world.support, world.chat, "ja 9", now=at(3)), [need(japanese.pk, 9)])
    require_skills(enqueue(world.support, world.chat, "fr", now=at(5)), [need(french.pk)])
    # an additional skill dropped after 10 s no longer counts once they have passed
    require_skills(
        enqueue(world.support, world.chat, "fr later", now=at(0)),
        [need(french.pk, additional=True, drop_after_seconds=10)],
    )
    scope = all_queues_scope()

    with django_assert_num_queries(2):
        rows = skills_backlog(scope, at(20))

    assert rows == [
        {
            "skill_id": japanese.pk,
            "name": "Japanese",
            "waiting": 4,
            "longest_wait_seconds": 20,
            "agents_online": 2,
            "nobody_online_can_take": 1,
        },
        {
            "skill_id": french.pk,
            "name": "French",
            "waiting": 1,
            "longest_wait_seconds": 15,
            "agents_online": 0,
            "nobody_online_can_take": 1,
        },
    ]
    # before the additional skill drops, its item is counted too
    assert skills_backlog(scope, at(5))[1]["waiting"] == 2
