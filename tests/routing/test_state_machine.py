"""The routing guarantees under generated sequences of events, on PostgreSQL.

Hypothesis drives a small world (3 agents, 3 queues, 2 channels) through the services: items
arrive, agents change status and capacity, passes run, agents accept, decline and close, time
passes and the sweep expires offers (one agent's configuration sets them busy after a timeout),
items are canceled. A pure-Python model follows what each event must do; after every step the
database is read and checked against the model and against the guarantees:

- an item has at most one live agent work, and its state matches it;
- an agent's used capacity is the sum of their live work and never above their capacity, which
  follows the presence configuration but never drops below what they hold;
- a pending offer is held only by an online agent who covers its channel and is in its queue;
- after a pass, no waiting item could have been taken by an eligible agent with the room they
  had when the pass reached it: no one holds nothing that a waiting item could use, and no one
  got a lower-priority item from the pass while a higher-priority item they could take waits.

The model does not choose the agent (the engine's tie-breaks are tested from tables in
test_engine.py): it checks each new offer is allowed and then follows it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from omnirouter.errors import Conflict
from presence.models import Agent, PresenceConfiguration, PresenceStatus
from presence.services import create_agent, update_presence_config
from routing import services
from routing.models import (
    LIVE_STATES,
    ActionLog,
    AgentWork,
    Queue,
    QueueMembership,
    RoutingConfiguration,
    ServiceChannel,
    WorkItem,
)
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    ServiceChannelFactory,
    make_status,
)

COOLDOWN = timedelta(seconds=60)  # ROUTING_REOFFER_COOLDOWN_SECONDS in tests/routing/conftest.py

# name -> (channels, online)
STATUSES = {
    "available": (("chat", "case"), True),
    "chat only": (("chat",), True),
    "busy": ((), True),
    # Offline, yet listing a channel: must never receive work.
    "away": (("chat",), False),
}
# Online first: Hypothesis leans towards the first choice.
STATUS_CHOICES = ["available", "chat only", "busy", "away", None]
# name -> (routing priority, model, push timeout, size percent)
QUEUES = {
    "vip": (1, "least_active", 30, None),
    "support": (2, "most_available", 30, None),
    "big": (2, "least_active", 45, 50),  # items take half the agent's capacity
}
CHANNEL_UNITS = {"chat": 1, "case": 2}
# name -> (capacity, queues, auto-accept)
AGENTS = {
    "ann": (3, ("vip", "support"), False),
    "bob": (2, ("support", "big"), False),
    "cat": (4, ("vip", "big"), True),
}
# name -> the status their presence configuration sets after a push timeout
STATUS_AFTER_TIMEOUT = {"bob": "busy"}


@dataclass
class MItem:
    pk: int
    queue: str
    channel: str
    order_key: tuple
    state: str = "waiting"
    refused: dict[str, datetime] = field(default_factory=dict)  # agent -> last refusal

    def units_for(self, capacity: Decimal) -> Decimal:
        # Exact to a hundredth of a unit: half of 3 is 1.5 (rounded up only past a hundredth).
        percent = QUEUES[self.queue][3]
        if percent is None:
            return Decimal(CHANNEL_UNITS[self.channel])
        share = (Decimal(capacity) * percent / 100).quantize(Decimal("0.01"), ROUND_CEILING)
        return max(Decimal("0.01"), share)


@dataclass
class MWork:
    pk: int
    item: int
    agent: str
    units: Decimal
    state: str
    expires_at: datetime | None


@dataclass
class MAgent:
    name: str
    pk: int
    configured: int
    status: str | None = None
    used: Decimal = Decimal(0)

    @property
    def capacity(self) -> Decimal:
        return max(Decimal(self.configured), self.used)

    @property
    def queues(self) -> tuple[str, ...]:
        return AGENTS[self.name][1]

    @property
    def auto_accept(self) -> bool:
        return AGENTS[self.name][2]

    def covers(self, channel: str) -> bool:
        if self.status is None:
            return False
        channels, online = STATUSES[self.status]
        return online and channel in channels


class RoutingMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = timezone.now().replace(microsecond=0)
        self.channels = {
            key: ServiceChannelFactory(key=key, label=key.title(), default_size_units=units)
            for key, units in CHANNEL_UNITS.items()
        }
        self.statuses = {
            name: make_status(name, [self.channels[c] for c in channels], online=online)
            for name, (channels, online) in STATUSES.items()
        }
        self.queues = {
            name: QueueFactory(
                name=name,
                routing_config=RoutingConfigurationFactory(
                    name=name,
                    routing_priority=rp,
                    routing_model=model,
                    push_timeout_seconds=timeout,
                    size_percent=percent,
                ),
            )
            for name, (rp, model, timeout, percent) in QUEUES.items()
        }
        self.configs: dict[str, PresenceConfiguration] = {}
        self.db_agents: dict[str, Agent] = {}
        self.agents: dict[str, MAgent] = {}
        for name, (capacity, queues, auto) in AGENTS.items():
            after = STATUS_AFTER_TIMEOUT.get(name)
            config = PresenceConfigurationFactory(
                name=name,
                capacity=capacity,
                auto_accept=auto,
                console_required=False,
                status_after_timeout=self.statuses[after] if after else None,
            )
            agent = create_agent(
                username=name,
                password=None,
                presence_config=config,
                queues=[self.queues[q] for q in queues],
            )
            self.configs[name] = config
            self.db_agents[name] = agent
            self.agents[name] = MAgent(name, agent.pk, capacity)
        self.items: dict[int, MItem] = {}
        self.works: dict[int, MWork] = {}
        self.last_work_pk = 0

    def teardown(self) -> None:
        # Examples share the test's database; each starts from nothing.
        ActionLog.objects.all().delete()
        AgentWork.objects.all().delete()
        WorkItem.objects.all().delete()
        QueueMembership.objects.all().delete()
        Agent.objects.all().delete()
        get_user_model().objects.all().delete()
        Queue.objects.all().delete()
        RoutingConfiguration.objects.all().delete()
        PresenceConfiguration.objects.all().delete()
        PresenceStatus.objects.all().delete()
        ServiceChannel.objects.all().delete()

    # --- the model's helpers ---------------------------------------------------------------

    def live_works(self, *states: str) -> list[MWork]:
        wanted = states or LIVE_STATES
        return sorted((w for w in self.works.values() if w.state in wanted), key=lambda w: w.pk)

    def end(self, work: MWork, state: str, item_state: str) -> None:
        work.state = state
        self.agents[work.agent].used -= work.units
        self.items[work.item].state = item_state

    def eligible(self, agent: MAgent, item: MItem) -> bool:
        refused_at = item.refused.get(agent.name)
        return (
            item.queue in agent.queues
            and agent.covers(item.channel)
            and (refused_at is None or self.now - refused_at >= COOLDOWN)
        )

    def absorb_pass(self, offers: int, complete: bool) -> None:
        """Check the offers a pass just wrote against the model, then follow them."""
        new = list(
            AgentWork.objects.filter(pk__gt=self.last_work_pk)
            .order_by("pk")
            .values("pk", "item_id", "agent_id", "state", "units", "pushed_at", "expires_at")
        )
        assert len(new) == offers
        by_pk = {a.pk: a for a in self.agents.values()}
        spare = {a.name: a.capacity - a.used for a in self.agents.values()}
        capacity = {a.name: a.capacity for a in self.agents.values()}
        # Walk the offers in routing order: each agent must have had the room then.
        for row in sorted(new, key=lambda r: self.items[r["item_id"]].order_key):
            item = self.items[row["item_id"]]
            agent = by_pk[row["agent_id"]]
            assert item.state == "waiting", f"offered an item that was {item.state}"
            assert self.eligible(agent, item), f"item {item.pk} offered to ineligible {agent.name}"
            units = item.units_for(capacity[agent.name])
            assert row["units"] == units
            assert spare[agent.name] >= units, f"{agent.name} had no room for item {item.pk}"
            spare[agent.name] -= units
            assert row["pushed_at"] == self.now
            if agent.auto_accept:
                assert (row["state"], row["expires_at"]) == ("opened", None)
            else:
                timeout = timedelta(seconds=QUEUES[item.queue][2])
                assert (row["state"], row["expires_at"]) == ("pushed", self.now + timeout)
        offered: dict[str, list[MItem]] = {name: [] for name in self.agents}
        for row in new:
            item = self.items[row["item_id"]]
            agent = by_pk[row["agent_id"]]
            item.state = "assigned" if row["state"] == "opened" else "offered"
            agent.used += row["units"]
            self.works[row["pk"]] = MWork(
                row["pk"], item.pk, agent.name, row["units"], row["state"], row["expires_at"]
            )
            offered[agent.name].append(item)
            self.last_work_pk = max(self.last_work_pk, row["pk"])
        if not complete:
            return  # the pass stopped at its page limit; items behind it wait for the next
        # Every waiting item: no eligible agent had room for it when the pass reached it (their
        # room at the end, plus what they were given from behind it in the line).
        for item in self.items.values():
            if item.state != "waiting":
                continue
            for agent in self.agents.values():
                if not self.eligible(agent, item):
                    continue
                later = sum(
                    self.works_units(agent.name, o)
                    for o in offered[agent.name]
                    if o.order_key > item.order_key
                )
                room_then = agent.capacity - agent.used + later
                assert room_then < item.units_for(agent.capacity), (
                    f"item {item.pk} ({item.queue}, {item.channel}) waits although "
                    f"{agent.name} had {room_then} units free for it"
                    + (" and got item(s) behind it" if later else "")
                )

    def works_units(self, agent: str, item: MItem) -> Decimal:
        return next(w.units for w in self.works.values() if w.item == item.pk and w.agent == agent)

    # --- rules -----------------------------------------------------------------------------

    @initialize(statuses=st.lists(st.sampled_from(STATUS_CHOICES), min_size=3, max_size=3))
    def agents_sign_in(self, statuses: list[str | None]) -> None:
        # Examples that start with everyone offline and nothing waiting mostly test nothing.
        for agent, status in zip(sorted(AGENTS), statuses, strict=True):
            self.set_presence(agent, status)

    @initialize(
        arrivals=st.lists(
            st.tuples(
                st.sampled_from(sorted(QUEUES)),
                st.sampled_from(sorted(CHANNEL_UNITS)),
                st.integers(1, 10),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def items_arrive(self, arrivals: list[tuple[str, str, int]]) -> None:
        for queue, channel, priority in arrivals:
            self.enqueue(queue, channel, priority)
        self.route(None)

    @rule(
        queue=st.sampled_from(sorted(QUEUES)),
        channel=st.sampled_from(sorted(CHANNEL_UNITS)),
        priority=st.integers(1, 10),
    )
    def enqueue(self, queue: str, channel: str, priority: int) -> None:
        item = services.enqueue_work(
            queue=self.queues[queue],
            channel=self.channels[channel],
            subject=f"{queue} {channel}",
            priority=priority,
            now=self.now,
        )
        key = (QUEUES[queue][0], priority, self.now, item.pk)
        self.items[item.pk] = MItem(item.pk, queue, channel, key)

    @rule(agent=st.sampled_from(sorted(AGENTS)), status=st.sampled_from(STATUS_CHOICES))
    def set_presence(self, agent: str, status: str | None) -> None:
        services.set_presence(
            agent=self.db_agents[agent],
            status=self.statuses[status] if status else None,
            now=self.now,
        )
        model = self.agents[agent]
        model.status = status
        for work in self.live_works("pushed"):
            if work.agent == agent and not model.covers(self.items[work.item].channel):
                self.end(work, "canceled", "waiting")

    @rule(agent=st.sampled_from(sorted(AGENTS)), capacity=st.integers(1, 4))
    def change_capacity(self, agent: str, capacity: int) -> None:
        update_presence_config(config=self.configs[agent], changes={"capacity": capacity})
        self.agents[agent].configured = capacity

    @rule(batch_size=st.sampled_from([None, 1, 2]))
    def route(self, batch_size: int | None) -> None:
        result = services.route_waiting_work(now=self.now, batch_size=batch_size)
        self.absorb_pass(
            result.offers, complete=result.batches < django_settings.ROUTING_MAX_PAGES_PER_PASS
        )

    @precondition(lambda self: self.live_works())
    @rule(n=st.integers(0, 20), decline=st.booleans(), route=st.booleans())
    def agent_acts(self, n: int, decline: bool, route: bool) -> None:
        """The agent holding a live work answers it: an offer is accepted (or declined), an
        accepted one is closed. Then, as in production, a pass may run."""
        live = self.live_works()
        work = live[n % len(live)]
        agent = self.db_agents[work.agent]
        if work.state == "opened":
            services.close_work(work_id=work.pk, agent=agent, now=self.now)
            self.end(work, "closed", "closed")
        elif decline:
            services.decline_work(work_id=work.pk, agent=agent, now=self.now)
            self.end(work, "declined", "waiting")
            self.items[work.item].refused[work.agent] = self.now
        elif work.expires_at > self.now:
            services.accept_work(work_id=work.pk, agent=agent, now=self.now)
            work.state = "opened"
            self.items[work.item].state = "assigned"
        else:
            with pytest.raises(Conflict) as refused:
                services.accept_work(work_id=work.pk, agent=agent, now=self.now)
            assert refused.value.code == "expired"
        if route:
            self.route(None)

    @precondition(
        lambda self: any(w.state not in ("pushed", "opened") for w in self.works.values())
    )
    @rule(n=st.integers(0, 20), action=st.sampled_from(["accept", "decline", "close"]))
    def act_on_ended_work(self, n: int, action: str) -> None:
        """A late or repeated click on work that has ended is refused and changes nothing."""
        ended = sorted(
            (w for w in self.works.values() if w.state not in ("pushed", "opened")),
            key=lambda w: w.pk,
        )
        work = ended[n % len(ended)]
        verb = {
            "accept": services.accept_work,
            "decline": services.decline_work,
            "close": services.close_work,
        }[action]
        with pytest.raises(Conflict):
            verb(work_id=work.pk, agent=self.db_agents[work.agent], now=self.now)

    @precondition(lambda self: self.items)
    @rule(n=st.integers(0, 50))
    def cancel(self, n: int) -> None:
        items = sorted(self.items)
        item = self.items[items[n % len(items)]]
        if item.state in ("waiting", "offered"):
            services.cancel_work_item(item_id=item.pk, now=self.now)
            for work in self.live_works():
                if work.item == item.pk:
                    self.end(work, "canceled", "canceled")
            item.state = "canceled"
        else:
            with pytest.raises(Conflict):
                services.cancel_work_item(item_id=item.pk, now=self.now)

    @rule(seconds=st.sampled_from([5, 20, 31, 46, 61]))
    def time_passes(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(seconds=st.sampled_from([0, 31, 46, 61]))
    def sweep(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)
        result = services.sweep(now=self.now)
        due = [w for w in self.live_works("pushed") if w.expires_at <= self.now]
        for work in due:
            self.end(work, "timed_out", "waiting")
            self.items[work.item].refused[work.agent] = self.now
        # An agent with a status after timeout gets it; their offers it does not cover return.
        for name in sorted({w.agent for w in due} & set(STATUS_AFTER_TIMEOUT)):
            agent = self.agents[name]
            agent.status = STATUS_AFTER_TIMEOUT[name]
            for work in self.live_works("pushed"):
                if work.agent == name and not agent.covers(self.items[work.item].channel):
                    self.end(work, "canceled", "waiting")
        assert (result["expired"], result["offline"], result["drift"]) == (len(due), 0, 0)
        self.absorb_pass(result["offers"], complete=True)

    # --- invariants, read from the database -----------------------------------------------

    @invariant()
    def guarantees_hold_in_the_database(self) -> None:
        # A few whole-table reads (the world is small), checked in Python.
        items = {
            pk: (status, ended)
            for pk, status, ended in WorkItem.objects.values_list("pk", "status", "ended_at")
        }
        works = list(
            AgentWork.objects.values_list(
                "pk", "item_id", "agent_id", "state", "units", "channel_id", "queue_id"
            )
        )
        agents = {
            row[0]: row[1:]
            for row in Agent.objects.values_list(
                "pk",
                "user__username",
                "status_id",
                "used_capacity",
                "open_count",
                "capacity",
                "configured_capacity",
            )
        }
        online = dict(PresenceStatus.objects.values_list("pk", "is_online"))
        covered = set(
            PresenceStatus.channels.through.objects.values_list(
                "presencestatus_id", "servicechannel_id"
            )
        )
        members = set(QueueMembership.objects.values_list("agent_id", "queue_id"))

        # The database says what the model says.
        assert {pk: status for pk, (status, _) in items.items()} == {
            pk: m.state for pk, m in self.items.items()
        }, "item states differ from the model"
        names = {pk: row[0] for pk, row in agents.items()}
        assert {pk: (item, names[agent], state) for pk, item, agent, state, *_ in works} == {
            pk: (w.item, w.agent, w.state) for pk, w in self.works.items()
        }, "agent work differs from the model"

        # One live agent work per item, and the item's state says which.
        live_by_item: dict[int, list[str]] = {}
        for _, item, _, state, *_ in works:
            if state in LIVE_STATES:
                live_by_item.setdefault(item, []).append(state)
        expected = {"waiting": [], "offered": ["pushed"], "assigned": ["opened"]}
        for pk, (status, ended) in items.items():
            assert live_by_item.get(pk, []) == expected.get(status, []), (pk, status)
            assert (ended is not None) == (status in ("closed", "canceled")), (pk, status)

        # Used capacity is the live work, within capacity; capacity follows the configuration
        # but never drops below what the agent holds.
        load: dict[int, list[int]] = {pk: [0, 0] for pk in agents}
        for _, _, agent, state, units, *_ in works:
            if state in LIVE_STATES:
                load[agent][0] += units
                load[agent][1] += 1
        for pk, (name, _, used, open_count, capacity, configured) in agents.items():
            assert [used, open_count] == load[pk], f"{name}'s load is not their live work"
            assert used <= capacity, f"{name} is over capacity"
            assert configured == self.agents[name].configured
            assert capacity == max(configured, used), f"{name}'s capacity {capacity}"

        # A pending offer is held by an online member covering its channel.
        for pk, _, agent, state, _, channel, queue in works:
            if state != "pushed":
                continue
            name, status, *_ = agents[agent]
            assert status is not None, f"offer {pk} held by {name} offline"
            assert online[status], f"offer {pk} held by {name} in an offline status"
            assert (status, channel) in covered, f"offer {pk}: {name} does not cover its channel"
            assert (agent, queue) in members, f"offer {pk}: {name} is not in its queue"


@pytest.mark.django_db(transaction=True)
def test_routing_guarantees_hold_under_generated_events():
    run_state_machine_as_test(
        RoutingMachine,
        settings=settings(
            max_examples=40,
            stateful_step_count=40,
            derandomize=True,
            verbosity=__import__("hypothesis").Verbosity.verbose,
            database=None,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
