"""Invariants under real concurrency on PostgreSQL: several routers and agents acting at once.

Agents have skills and many items require them, some as additional requirements that dropped
before the run, drop during it or only later (relaxation), so the engine's skill rule is in play
for every invariant.

Each thread has its own database connection (Django connections are per thread), so these are
real concurrent transactions. Afterwards the database is checked with plain SQL.
"""

from __future__ import annotations

import contextlib
import random
import threading
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from omnirouter.errors import Conflict, DomainError
from presence.models import Agent
from routing import engine, services
from routing.models import AgentSkill, AgentWork, Skill, WorkItem
from routing.selectors import agent_views, item_requirements
from routing.services.skills import need
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_agent,
    make_status,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres_only]

ROUTERS = 4


def _run_threads(targets):
    errors: list[BaseException] = []
    start = threading.Barrier(len(targets))

    def wrap(fn):
        def run():
            try:
                start.wait()
                fn()
            except BaseException as exc:  # reported to the test below
                errors.append(exc)
            finally:
                connections.close_all()

        return run

    threads = [threading.Thread(target=wrap(t)) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not [t for t in threads if t.is_alive()], "a thread hung (deadlock?)"
    assert errors == []


def _sql(query: str) -> list[tuple]:
    with connection.cursor() as cur:
        cur.execute(query)
        return cur.fetchall()


def _check_invariants() -> None:
    # No item has two live agent works.
    assert (
        _sql(
            "SELECT item_id FROM routing_agentwork WHERE state IN ('pushed','opened') "
            "GROUP BY item_id HAVING count(*) > 1"
        )
        == []
    )
    # No agent is over capacity, and stored load equals live work.
    assert (
        _sql(
            "SELECT a.id FROM presence_agent a LEFT JOIN "
            "(SELECT agent_id, sum(units) u, count(*) n FROM routing_agentwork "
            "WHERE state IN ('pushed','opened') GROUP BY agent_id) w "
            "ON w.agent_id = a.id WHERE a.used_capacity > a.capacity "
            "OR a.used_capacity <> coalesce(w.u, 0) OR a.open_count <> coalesce(w.n, 0)"
        )
        == []
    )
    # Every item is in exactly one state, and that state agrees with its agent work.
    assert (
        _sql(
            "SELECT i.id, i.status, w.state FROM routing_workitem i LEFT JOIN routing_agentwork w "
            "ON w.item_id = i.id AND w.state IN ('pushed','opened') WHERE NOT ("
            "(i.status = 'waiting' AND w.id IS NULL)"
            " OR (i.status = 'offered' AND w.state = 'pushed')"
            " OR (i.status = 'assigned' AND w.state = 'opened')"
            " OR (i.status IN ('closed','canceled') AND w.id IS NULL))"
        )
        == []
    )


@pytest.fixture
def backlog(settings):
    settings.ROUTING_MODE = "manual"
    chat = ServiceChannelFactory(key="chat")
    case = ServiceChannelFactory(key="case", default_size_units=3)
    status = make_status("Available", [chat, case])
    queues = [
        QueueFactory(
            name=f"q{p}",
            routing_config=RoutingConfigurationFactory(name=f"c{p}", routing_priority=p),
        )
        for p in (1, 2, 3)
    ]
    config = PresenceConfigurationFactory(name="api", capacity=7, console_required=False)
    agents = [
        make_agent(f"agent{n}", queues=queues[: 1 + n % 3], config=config, status=status)
        for n in range(12)
    ]
    skills = [Skill.objects.create(name=f"skill {n}") for n in range(3)]
    rng = random.Random(7)
    for agent in agents:
        for skill in rng.sample(skills, rng.randint(1, 2)):
            AgentSkill.objects.create(agent=agent, skill=skill, level=rng.choice([1, 3, 5]))
    now = timezone.now()
    items = []
    for n in range(400):
        # Little top-priority work, more of the next: it runs out while the agents still have
        # room, so the routers must hand out each routing priority in turn.
        queue = rng.choices(queues, weights=(1, 2, 7))[0]
        channel = rng.choice([chat, chat, case])
        age = 400 - n
        needs = []
        for skill in rng.sample(skills, rng.choice([0, 0, 0, 1, 1, 2])):
            if rng.random() < 0.5:
                needs.append(need(skill.pk, rng.choice([0, 2, 4])))
            else:
                # Dropped before the run, during it, or long after.
                drop_after = age + rng.choice([-30, 1, 2, 3600])
                needs.append(
                    need(skill.pk, 4, additional=True, drop_after_seconds=max(0, drop_after))
                )
        items.append(
            services.enqueue_work(
                queue=queue,
                channel=channel,
                subject=f"i{n}",
                skills=needs,
                now=now - timedelta(seconds=age),
            )
        )
    return agents, items


def test_concurrent_routers_never_double_assign_or_overfill(backlog):
    agents, _ = backlog
    started = timezone.now()

    def router():
        for _ in range(30):
            services.route_waiting_work(batch_size=25, max_batches=2)

    _run_threads([router] * ROUTERS)

    _check_invariants()
    # As many assignments as capacity allows: every agent is full or nothing left fits them.
    # Fits: room for its size, and the skills it required when the run started (what it
    # requires later is no more than that: requirements only drop).
    waiting = list(WorkItem.objects.filter(status="waiting"))
    requirements = item_requirements(waiting)
    views = agent_views(Agent.objects.all(), now=started)
    for agent in Agent.objects.all():
        spare = agent.capacity - agent.used_capacity
        skills = views[agent.pk].skills
        queue_ids = set(agent.memberships.values_list("queue_id", flat=True))
        fitting = [
            item.subject
            for item in waiting
            if item.queue_id in queue_ids
            and item.size_units <= spare
            and all(
                skills.get(r.skill_id, -1) >= r.min_level
                for r in engine.in_force(requirements.get(item.pk, ()), started)
            )
        ]
        assert not fitting, f"{agent} has {spare} spare units and {fitting} fit"
    # Skills were in play: some work waits for a skill nobody with room has.
    assert any(item.pk in requirements for item in waiting)
    assert (
        AgentWork.objects.filter(state="pushed").count()
        == WorkItem.objects.filter(status="offered").count()
    )
    _check_cross_queue_priority()


def _check_cross_queue_priority() -> None:
    # Passes ran side by side, yet no agent was handed lower-priority work while an item of a
    # higher routing priority waited in one of their queues and fitted in their room: the units
    # free when the lower-priority offer was made, counted as everything they were handed up to
    # that push time except that offer (nothing ends in this test, and every agent is available
    # for both channels), and the agent had every skill it required at that push time (an
    # additional requirement no longer counts once the item has waited its drop time). "Waited"
    # means it had no offer yet at that push time; the offers of one batch share their push time.
    inversions = _sql(
        "SELECT w.agent_id, low.subject, low.routing_priority, high.subject,"
        " high.routing_priority FROM routing_agentwork w"
        " JOIN presence_agent a ON a.id = w.agent_id"
        " JOIN routing_workitem low ON low.id = w.item_id"
        " JOIN routing_queuemembership m ON m.agent_id = w.agent_id"
        " JOIN routing_workitem high ON high.queue_id = m.queue_id"
        " WHERE high.routing_priority < low.routing_priority"
        " AND high.enqueued_at <= w.pushed_at"
        " AND high.size_units <= a.capacity + w.units - (SELECT sum(o.units)"
        " FROM routing_agentwork o WHERE o.agent_id = w.agent_id AND o.pushed_at <= w.pushed_at)"
        " AND NOT EXISTS (SELECT 1 FROM routing_agentwork hw"
        " WHERE hw.item_id = high.id AND hw.pushed_at <= w.pushed_at)"
        " AND NOT EXISTS (SELECT 1 FROM routing_itemskill r WHERE r.item_id = high.id"
        " AND NOT (r.additional AND w.pushed_at >="
        " high.enqueued_at + r.drop_after_seconds * interval '1 second')"
        " AND NOT EXISTS (SELECT 1 FROM routing_agentskill s WHERE s.agent_id = w.agent_id"
        " AND s.skill_id = r.skill_id AND s.level >= r.min_level))"
        " LIMIT 5"
    )
    assert inversions == []
    # The check had something to check: lower-priority work was handed out too.
    assert AgentWork.objects.filter(item__routing_priority__gt=1).exists()


def test_routers_and_agents_acting_at_once_keep_every_invariant(backlog):
    agents, items = backlog
    stop = threading.Event()

    def router():
        while not stop.is_set():
            services.route_waiting_work(batch_size=20, max_batches=2)

    def agent_actions(agent: Agent, seed: int):
        rng = random.Random(seed)
        agent = Agent.objects.select_related("presence_config").get(pk=agent.pk)
        for _ in range(40):
            works = list(AgentWork.objects.filter(agent=agent, state__in=["pushed", "opened"]))
            if not works:
                continue
            work = rng.choice(works)
            try:
                if work.state == "pushed":
                    if rng.random() < 0.8:
                        services.accept_work(work_id=work.pk, agent=agent)
                    else:
                        services.decline_work(work_id=work.pk, agent=agent, reason="busy")
                else:
                    services.close_work(work_id=work.pk, agent=agent)
            except DomainError:
                pass  # lost a race to a cancel or another action: that is the rule working

    def canceller():
        rng = random.Random(99)
        for item in rng.sample(items, 60):
            # Losing a race to an accept is the rule working.
            with contextlib.suppress(DomainError):
                services.cancel_work_item(item_id=item.pk)

    def actors():
        try:
            _run_threads(
                [lambda a=a, i=i: agent_actions(a, i) for i, a in enumerate(agents[:8])]
                + [canceller]
            )
        finally:
            stop.set()

    _run_threads([router, router, router, actors])

    _check_invariants()
    closed = WorkItem.objects.filter(status="closed").count()
    assert closed > 0
    assert AgentWork.objects.filter(state="closed").count() == closed


def test_accepts_racing_the_deadline_are_accepted_or_expired_never_both(backlog):
    """Every offer due at one instant; its agent accepts it at that instant (by their clock,
    just before it) while two sweeps expire what is due (by theirs, at it). Half the agents are
    set busy after a timeout, so the sweeps also return those agents' other offers while they
    accept them."""
    agents, _ = backlog
    services.route_waiting_work(batch_size=100)
    deadline = timezone.now() + timedelta(seconds=60)
    busy = make_status("Busy", [])
    strict = PresenceConfigurationFactory(
        name="strict", capacity=7, console_required=False, status_after_timeout=busy
    )
    Agent.objects.filter(pk__in=[a.pk for a in agents[::2]]).update(presence_config=strict)
    AgentWork.objects.filter(state="pushed").update(expires_at=deadline)
    offers = list(AgentWork.objects.filter(state="pushed").values_list("pk", "agent_id"))
    assert len(offers) > 40
    accepted: dict[int, bool] = {}
    refusals: list[str] = []

    def agent_accepts(agent_id: int):
        agent = Agent.objects.select_related("presence_config").get(pk=agent_id)
        for work_id, _ in sorted(o for o in offers if o[1] == agent_id):
            try:
                services.accept_work(
                    work_id=work_id, agent=agent, now=deadline - timedelta(milliseconds=1)
                )
                accepted[work_id] = True
            except Conflict as refused:
                accepted[work_id] = False
                refusals.append(refused.code)

    def sweeper():
        for _ in range(3):
            services.expire_offers(now=deadline)

    _run_threads([lambda a=a: agent_accepts(a.pk) for a in agents] + [sweeper, sweeper])

    _check_invariants()
    states = dict(
        AgentWork.objects.filter(pk__in=[o[0] for o in offers]).values_list("pk", "state")
    )
    for work_id, _ in offers:
        expected = {"opened"} if accepted[work_id] else {"timed_out", "canceled"}
        assert states[work_id] in expected, (work_id, accepted[work_id], states[work_id])
    # A refused accept says the sweep ended the offer (never "expired": by the agent's clock
    # it was still open).
    assert set(refusals) <= {"timed_out", "canceled"}
    # The agents set busy are those of the strict configuration with an offer that timed out.
    timed_out = set(AgentWork.objects.filter(state="timed_out").values_list("agent_id", flat=True))
    for agent in Agent.objects.filter(pk__in=[a.pk for a in agents]):
        expected_busy = agent.presence_config_id == strict.pk and agent.pk in timed_out
        assert (agent.status_id == busy.pk) == expected_busy, agent
