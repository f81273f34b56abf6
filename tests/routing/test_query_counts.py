"""Queries per call on the hot paths, pinned exactly on each database path.

A change in these numbers is a change in cost: look at it before updating the number (and the
"Query counts" table in bench/README.md). Counts are taken inside the test's transaction, so each
service's ``atomic()`` shows as a SAVEPOINT and a RELEASE (two queries a production call, which
opens a real transaction instead, does not make). Runs on PostgreSQL (raw SQL in the routing
pass) and on SQLite (the ORM branch of the embedded run), each with its own numbers where the
paths differ.
"""

from __future__ import annotations

from decimal import Decimal

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


@pytest.mark.parametrize("expired", [1, 50])
def test_expiring_offers_costs_a_fixed_number_of_queries(
    world, agents, expired, django_assert_num_queries
):
    """``expire_offers`` works on sets: the due offers' agents (unlocked), savepoint, the agents
    locked, then on PostgreSQL one statement that ends the offers and returns their items (and
    what the events show), one that frees the agents' capacity and returns their new load,
    release: 6 for one offer as for fifty. SQLite reads the offers, then writes offers, items
    and agents through the ORM and reads the agents' load back: 9."""
    waiting(world, expired)
    assert route(1).offers == expired

    with django_assert_num_queries(on(postgresql=6, sqlite=9)):
        assert services.expire_offers(now=at(31)) == expired

    assert AgentWork.objects.filter(state="timed_out").count() == expired
    assert sum(a.used_capacity for a in Agent.objects.all()) == 0


@pytest.mark.parametrize("expired", [1, 50])
def test_expiring_offers_with_a_status_after_timeout_costs_the_same(
    world, expired, django_assert_num_queries
):
    """The status after timeout, and the other offers it no longer covers, are in the same
    statements on PostgreSQL; SQLite reads the changed agents' queues once more (10)."""
    config = PresenceConfigurationFactory(
        name="strict", capacity=60, console_required=False, status_after_timeout=world.busy
    )
    make_agent("ann", queues=[world.support], config=config, status=world.available)
    waiting(world, expired)
    assert route(1).offers == expired

    with django_assert_num_queries(on(postgresql=6, sqlite=10)):
        assert services.expire_offers(now=at(31)) == expired

    assert Agent.objects.get().status == world.busy


def test_expiring_nothing_costs_one_query(world, agents, django_assert_num_queries):
    waiting(world, 3)
    route(1)

    with django_assert_num_queries(1):
        assert services.expire_offers(now=at(30)) == 0


def test_a_heartbeat_costs_one_query(world, agents, django_assert_num_queries, settings):
    """One conditional UPDATE that also says whether the console was stale (a pass is due if
    so); SQLite reads the row first. A heartbeat within the write interval of the stored one
    writes nothing (and SQLite stops after its read)."""
    settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS = 15

    with django_assert_num_queries(on(postgresql=1, sqlite=2)):
        services.touch_console(agent=agents[0].pk, now=at(1))
    with django_assert_num_queries(1):
        services.touch_console(agent=agents[0].pk, now=at(11))

    assert Agent.objects.get(pk=agents[0].pk).console_seen_at == at(1)


@pytest.mark.parametrize("offers", [1, 50])
def test_the_capacity_check_costs_one_query(world, agents, offers, django_assert_num_queries):
    """One query compares stored load with live work, for the agents whose work changed since
    the last check or for every agent; nothing more while nothing drifted."""
    waiting(world, offers)
    route(1)

    with django_assert_num_queries(1):
        assert services.reconcile_capacity(since=at(0), now=at(2)) == 0
    with django_assert_num_queries(1):
        assert services.reconcile_capacity(now=at(2)) == 0


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


def test_a_routing_batch_with_skills_costs_two_statements_more_whatever_its_size(
    world, agents, django_assert_num_queries
):
    """The claim says which items require skills; then their requirements (with the skills'
    names) and the locked agents' skills are read, one statement each, for any number of
    items and agents. Items in force and relaxed alike."""
    billing = Skill.objects.create(name="Billing")
    japanese = Skill.objects.create(name="Japanese")
    for n, agent in enumerate(agents):
        AgentSkill.objects.create(agent=agent, skill=billing, level=Decimal(n))
        if n % 2:
            AgentSkill.objects.create(agent=agent, skill=japanese, level=Decimal("5"))
    for i in range(10):
        needs = [need(billing.pk, i % 3)]
        if i % 3 == 0:
            needs.append(need(japanese.pk, 1, additional=True, drop_after_seconds=i))
        enqueue(world.support, world.chat, f"item {i}", skills=needs, now=at(0))

    with django_assert_num_queries(on(postgresql=12, sqlite=16)):
        assert route(5).offers == 10


@pytest.mark.parametrize(
    ("kind", "queries"),
    [("plain", 4), ("payload", 5), ("skills", 8)],
)
def test_intake(world, kind, queries, django_assert_num_queries):
    """``enqueue_work``: the insert and the active classification rules, within a savepoint
    (4; no rule is active here). A payload asks which skills its
    attributes call for (1); requirements are written in one statement within their own
    savepoint (3), however many there are."""
    skill = Skill.objects.create(name="Japanese", attribute="language", value="ja")
    kwargs = {
        "plain": {},
        "payload": {"payload": {"language": "en"}},
        "skills": {"payload": {"language": "ja"}, "skills": [need(skill.pk, 2)]},
    }[kind]
    with django_assert_num_queries(queries):
        enqueue(world.support, world.chat, "new", now=at(0), **kwargs)


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
