"""Routing rules as scenarios, through the services.

Run on PostgreSQL (raw SQL in the routing pass) and again on SQLite (its ORM branch, which the
embedded run uses): see the SQLite pass of ``./dev test``.
"""

import importlib
from datetime import timedelta
from decimal import Decimal

import pytest

from omnirouter.errors import Conflict, DomainError, NotFound
from presence.models import Agent
from routing import services
from routing.models import AgentSkill, AgentWork, ItemSkill, Skill, WorkItem
from routing.selectors import explain_item, explain_wait
from routing.services.skills import need
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    RoutingConfigurationFactory,
    enqueue,
    make_agent,
)
from tests.routing.scenario import at, live, load, route

# The module, not the function of the same name that ``routing.services`` exports.
sweep_module = importlib.import_module("routing.services.sweep")

pytestmark = pytest.mark.usefixtures("fast_passwords")


def test_higher_routing_priority_queue_is_served_first_even_if_younger(world, api_config):
    api_config.capacity = 1
    api_config.save()
    agent = make_agent(
        "ann", queues=[world.support, world.vip], config=api_config, status=world.available
    )
    enqueue(world.support, world.chat, "old support", now=at(0))
    enqueue(world.vip, world.chat, "new vip", now=at(50))

    route(60)

    assert live(agent) == ["new vip"]
    assert WorkItem.objects.get(subject="old support").status == "waiting"


def test_oldest_first_then_item_priority(world, api_config):
    api_config.capacity = 2
    api_config.save()
    agent = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "young", now=at(30))
    enqueue(world.support, world.chat, "old", now=at(0))
    enqueue(world.support, world.chat, "urgent but youngest", priority=1, now=at(40))

    route(60)

    assert live(agent) == ["urgent but youngest", "old"]


def test_secondary_priority_orders_items_of_equal_priority_before_their_age(world, api_config):
    api_config.capacity = 2
    api_config.save()
    agent = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "old", now=at(0))
    enqueue(world.support, world.chat, "gold customer", secondary_priority=1, now=at(30))
    enqueue(world.support, world.chat, "urgent", priority=1, secondary_priority=9, now=at(40))

    route(60)

    assert live(agent) == ["urgent", "gold customer"]
    assert WorkItem.objects.get(subject="old").status == "waiting"


def test_least_active_spreads_work_and_breaks_ties_on_longest_idle(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    Agent.objects.filter(pk=ann.pk).update(last_assigned_at=at(-10))
    Agent.objects.filter(pk=bob.pk).update(last_assigned_at=at(-100))
    for n in range(3):
        enqueue(world.support, world.chat, f"c{n}", now=at(n))

    route(10)

    assert live(bob) == ["c0", "c2"]  # bob idle longest, so first; then alternate
    assert live(ann) == ["c1"]
    why = AgentWork.objects.get(item__subject="c0").routing_reason
    assert why["model"] == "least_active"
    assert why["tie_break"] == "longest_idle"


def test_most_available_sends_to_most_spare_capacity(world, api_config):
    cfg = world.support.routing_config
    cfg.routing_model = "most_available"
    cfg.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    big = PresenceConfigurationFactory(name="big", capacity=20, console_required=False)
    bob = make_agent("bob", queues=[world.support], config=big, status=world.available)
    enqueue(world.support, world.chat, "first", now=at(0))

    route(5)

    assert live(bob) == ["first"]
    assert live(ann) == []
    assert "Most available: 20 spare units" in AgentWork.objects.get().routing_reason["text"]


def test_capacity_with_mixed_sizes_is_never_exceeded(world, api_config):
    api_config.capacity = 5
    api_config.save()
    agent = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.case, "case 2u a", now=at(0))  # channel default: 2 units
    enqueue(world.support, world.case, "case 2u b", now=at(1))
    enqueue(world.support, world.case, "case 2u c", now=at(2))
    enqueue(world.support, world.chat, "chat 1u", now=at(3))

    route(10)

    assert live(agent) == ["case 2u a", "case 2u b", "chat 1u"]
    assert load(agent) == (5, 3)
    assert WorkItem.objects.get(subject="case 2u c").status == "waiting"


def test_percentage_size_takes_a_share_of_each_agents_capacity(world, api_config):
    pct = QueueFactory(
        name="Pct",
        routing_config=RoutingConfigurationFactory(
            name="pct", routing_priority=1, size_units=None, size_percent=50
        ),
    )
    agent = make_agent("ann", queues=[pct], config=api_config, status=world.available)
    for n in range(3):
        enqueue(pct, world.chat, f"half {n}", now=at(n))

    route(10)

    assert live(agent) == ["half 0", "half 1"]
    assert load(agent) == (10, 2)


def test_decline_reroutes_to_another_agent_and_keeps_the_items_age(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    Agent.objects.filter(pk=bob.pk).update(last_assigned_at=at(-1))  # ann idle longer
    item = enqueue(world.support, world.chat, "hot potato", now=at(0))
    route(1)
    offer = AgentWork.objects.get(item=item)
    assert offer.agent_id == ann.pk

    services.decline_work(work_id=offer.pk, agent=ann, reason="Language", now=at(2))
    route(3)

    assert load(ann) == (0, 0)
    assert live(bob) == ["hot potato"]
    item.refresh_from_db()
    assert item.enqueued_at == at(0)
    assert AgentWork.objects.get(pk=offer.pk).decline_reason == "Language"


def test_push_timeout_reroutes_and_applies_status_after_timeout(world):
    config = PresenceConfigurationFactory(
        name="strict", console_required=False, status_after_timeout=world.busy
    )
    ann = make_agent("ann", queues=[world.support], config=config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=config, status=world.available)
    Agent.objects.filter(pk=bob.pk).update(last_assigned_at=at(-1))
    item = enqueue(world.support, world.chat, "nobody home", now=at(0))
    route(1)
    assert live(ann) == ["nobody home"]

    assert services.expire_offers(now=at(30)) == 0  # deadline is 1 + 30 s
    assert services.expire_offers(now=at(31)) == 1
    route(31)

    ann.refresh_from_db()
    assert ann.status == world.busy
    assert load(ann) == (0, 0)
    assert live(bob) == ["nobody home"]
    assert AgentWork.objects.filter(item=item, state="timed_out").count() == 1


def test_item_declined_by_the_only_agent_is_offered_again_after_cooldown(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "lonely", now=at(0))
    route(1)
    services.decline_work(work_id=AgentWork.objects.get().pk, agent=ann, now=at(2))

    assert route(30).offers == 0
    assert route(62).offers == 1
    assert live(ann) == ["lonely"]
    assert (
        AgentWork.objects.filter(state="pushed").get().routing_reason["reoffer_after_cooldown"]
        is True
    )


def test_going_offline_returns_offers_but_keeps_accepted_work(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "accepted", now=at(0))
    enqueue(world.support, world.chat, "pending", now=at(1))
    route(2)
    accepted = AgentWork.objects.get(item__subject="accepted")
    services.accept_work(work_id=accepted.pk, agent=ann, now=at(3))

    services.set_presence(agent=ann, status=None, now=at(4))

    assert live(ann) == ["accepted"]
    assert load(ann) == (1, 1)
    assert WorkItem.objects.get(subject="pending").status == "waiting"
    assert AgentWork.objects.get(item__subject="pending").state == "canceled"


def test_going_busy_for_a_channel_returns_only_that_channels_offers(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "chat", now=at(0))
    enqueue(world.support, world.case, "case", now=at(1))
    route(2)

    services.set_presence(agent=ann, status=world.chat_only, now=at(3))

    assert live(ann) == ["chat"]
    assert WorkItem.objects.get(subject="case").status == "waiting"


def test_transfer_moves_accepted_work_to_another_queue_and_routes_it_there(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    vera = make_agent("vera", queues=[world.vip], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "needs vip", now=at(0))
    route(1)
    work = AgentWork.objects.get(item=item)
    services.accept_work(work_id=work.pk, agent=ann, now=at(2))

    services.transfer_work(work_id=work.pk, agent=ann, queue=world.vip, now=at(3))
    route(4)

    item.refresh_from_db()
    assert item.queue == world.vip
    assert item.routing_priority == 1
    assert load(ann) == (0, 0)
    assert live(vera) == ["needs vip"]
    assert AgentWork.objects.get(pk=work.pk).state == "transferred"


def test_auto_accept_assigns_without_an_offer(world):
    auto = PresenceConfigurationFactory(name="auto", auto_accept=True, console_required=False)
    ann = make_agent("ann", queues=[world.support], config=auto, status=world.available)
    item = enqueue(world.support, world.chat, "auto", now=at(0))

    route(1)

    work = AgentWork.objects.get(item=item)
    assert (work.state, work.opened_at, work.expires_at, work.auto_accepted) == (
        "opened",
        at(1),
        None,
        True,
    )
    item.refresh_from_db()
    assert item.status == "assigned"
    assert load(ann) == (1, 1)


def test_accept_is_compare_and_set(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.busy)
    enqueue(world.support, world.chat, "x", now=at(0))
    route(1)
    work = AgentWork.objects.get()

    with pytest.raises(NotFound):
        services.accept_work(work_id=work.pk, agent=bob, now=at(2))
    with pytest.raises(Conflict, match="timed out"):
        services.accept_work(work_id=work.pk, agent=ann, now=at(31))
    services.accept_work(work_id=work.pk, agent=ann, now=at(5))
    with pytest.raises(Conflict, match="already accepted"):
        services.accept_work(work_id=work.pk, agent=ann, now=at(6))

    work.refresh_from_db()
    assert (work.state, work.opened_at) == ("opened", at(5))


def test_decline_rules_of_the_presence_configuration(world):
    strict = PresenceConfigurationFactory(
        name="strict", console_required=False, require_decline_reason=True
    )
    no_decline = PresenceConfigurationFactory(
        name="no", console_required=False, allow_decline=False
    )
    ann = make_agent("ann", queues=[world.support], config=strict, status=world.available)
    bob = make_agent("bob", queues=[world.vip], config=no_decline, status=world.available)
    enqueue(world.support, world.chat, "a", now=at(0))
    enqueue(world.vip, world.chat, "b", now=at(0))
    route(1)

    with pytest.raises(DomainError, match="reason is required"):
        services.decline_work(work_id=AgentWork.objects.get(agent=ann).pk, agent=ann, now=at(2))
    with pytest.raises(DomainError, match="does not allow"):
        services.decline_work(work_id=AgentWork.objects.get(agent=bob).pk, agent=bob, now=at(2))
    assert AgentWork.objects.filter(state="pushed").count() == 2


def test_close_frees_capacity_and_routes_the_next_item(world, api_config):
    api_config.capacity = 1
    api_config.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "one", now=at(0))
    enqueue(world.support, world.chat, "two", now=at(1))
    route(2)
    work = AgentWork.objects.get(item__subject="one")
    services.accept_work(work_id=work.pk, agent=ann, now=at(3))

    services.close_work(work_id=work.pk, agent=ann, note="Refunded", now=at(4))
    route(5)

    assert live(ann) == ["two"]
    assert WorkItem.objects.get(subject="one").status == "closed"
    assert AgentWork.objects.get(pk=work.pk).end_note == "Refunded"


def test_cancel_withdraws_a_pending_offer(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "gone", now=at(0))
    route(1)

    services.cancel_work_item(item_id=item.pk, now=at(2))

    assert load(ann) == (0, 0)
    item.refresh_from_db()
    assert item.status == "canceled"
    with pytest.raises(Conflict):
        services.cancel_work_item(item_id=item.pk, now=at(3))


def test_agents_without_live_console_get_nothing_and_are_set_offline(world, settings):
    settings.CONSOLE_GRACE_SECONDS = 30
    settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS = 15
    console = PresenceConfigurationFactory(name="console", console_required=True)
    ann = make_agent("ann", queues=[world.support], config=console, status=world.available)
    enqueue(world.support, world.chat, "x", now=at(0))

    assert route(1).offers == 0  # never connected
    services.touch_console(agent=ann, now=at(1))
    assert route(2).offers == 1
    # The stored time may lag the last heartbeat by the write interval: the grace allows it.
    assert services.expire_lost_consoles(now=at(46)) == 0
    assert services.expire_lost_consoles(now=at(47)) == 1

    ann.refresh_from_db()
    assert ann.status is None
    assert WorkItem.objects.get().status == "waiting"


def test_lowering_capacity_under_open_work_keeps_the_constraint_and_settles(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    for n in range(4):
        enqueue(world.support, world.chat, f"w{n}", now=at(n))
    route(5)
    api_config.capacity = 2
    api_config.save()

    services.apply_presence_config(config_id=api_config.pk)
    ann.refresh_from_db()
    assert (ann.configured_capacity, ann.capacity, ann.used_capacity) == (2, 4, 4)

    for work in AgentWork.objects.filter(agent=ann).order_by("id")[:3]:
        services.decline_work(work_id=work.pk, agent=ann, now=at(6))
    ann.refresh_from_db()
    assert (ann.capacity, ann.used_capacity) == (2, 1)


def test_heartbeats_write_once_per_interval_and_keep_a_live_console_online(world, settings):
    settings.CONSOLE_GRACE_SECONDS = 30
    settings.CONSOLE_HEARTBEAT_SECONDS = 10
    settings.CONSOLE_SEEN_WRITE_INTERVAL_SECONDS = 15
    console = PresenceConfigurationFactory(name="console", console_required=True)
    ann = make_agent("ann", queues=[world.support], config=console, status=world.available)
    services.touch_console(agent=ann, now=at(0))

    # given a console that heartbeats every 10 s (a little late each time) for five minutes
    seen = []
    for beat in range(1, 31):
        now = at(beat * 10.2)
        services.touch_console(agent=ann.pk, now=now)
        seen.append(Agent.objects.get(pk=ann.pk).console_seen_at)
        # then the sweep never sets her offline, and she stays routable
        assert services.expire_lost_consoles(now=now + timedelta(seconds=9)) == 0
        assert now - seen[-1] < timedelta(seconds=30)

    # and every second heartbeat wrote (the stored times: the first, then 15 more)
    assert len(set(seen)) == 1 + 15

    # when the console falls silent, she goes offline once the grace is over (allowing for the
    # stored time's lag behind the last heartbeat), not before
    last = at(30 * 10.2)
    assert services.expire_lost_consoles(now=last + timedelta(seconds=30)) == 0
    assert services.expire_lost_consoles(now=last + timedelta(seconds=46)) == 1
    assert Agent.objects.get(pk=ann.pk).status is None


def test_a_stale_console_that_heartbeats_again_asks_for_a_pass(
    world, settings, django_capture_on_commit_callbacks
):
    settings.ROUTING_MODE = "embedded"  # a routing request is an after-commit callback
    settings.CONSOLE_GRACE_SECONDS = 30
    console = PresenceConfigurationFactory(name="console", console_required=True)
    ann = make_agent("ann", queues=[world.support], config=console, status=world.available)
    services.touch_console(agent=ann, now=at(0))

    with django_capture_on_commit_callbacks() as fresh:
        services.touch_console(agent=ann, now=at(20))  # written, but it was live: no pass
    with django_capture_on_commit_callbacks() as stale:
        services.touch_console(agent=ann, now=at(60))  # silent for 40 s: routable again

    assert (len(fresh), len(stale)) == (0, 1)
    assert Agent.objects.get(pk=ann.pk).console_seen_at == at(60)


def test_sweep_repairs_capacity_drift(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "x", now=at(0))
    route(1)
    Agent.objects.filter(pk=ann.pk).update(used_capacity=7, open_count=3)  # phantom load

    assert services.reconcile_capacity() == 1
    assert load(ann) == (1, 1)
    assert services.reconcile_capacity() == 0


def test_the_capacity_check_since_a_time_looks_only_at_agents_whose_work_changed(world, api_config):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.vip], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "for ann", now=at(0))
    route(1)
    enqueue(world.vip, world.chat, "for bob", now=at(0))
    route(10)
    Agent.objects.filter(pk__in=[ann.pk, bob.pk]).update(used_capacity=7)  # phantom load

    # bob's work changed at 10 s, ann's at 1 s: a check since 5 s sees bob only
    assert services.reconcile_capacity(since=at(5), now=at(11)) == 1
    assert (load(ann), load(bob)) == ((7, 1), (1, 1))
    # the full check finds ann
    assert services.reconcile_capacity(now=at(12)) == 1
    assert load(ann) == (1, 1)


def test_the_sweep_checks_every_agent_once_a_minute(world, api_config, settings, monkeypatch):
    settings.ROUTING_CAPACITY_FULL_CHECK_SECONDS = 60
    monkeypatch.setattr(sweep_module, "_capacity_checks", sweep_module.CapacityChecks())
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "for ann", now=at(0))
    route(1)
    services.accept_work(work_id=AgentWork.objects.get().pk, agent=ann, now=at(2))
    services.sweep(now=at(100))  # the first check of this process: every agent
    Agent.objects.filter(pk=ann.pk).update(used_capacity=7)  # a hand edit: no work changed

    # then the next sweeps look only at agents whose work changed: not hers
    assert services.sweep(now=at(120))["drift"] == 0
    assert services.sweep(now=at(159))["drift"] == 0
    # and a minute after the last full check, every agent is checked
    assert services.sweep(now=at(160))["drift"] == 1
    assert load(ann) == (1, 1)
    # a clock that goes back (a fake time) starts over with a full check
    Agent.objects.filter(pk=ann.pk).update(used_capacity=7)
    assert services.sweep(now=at(50))["drift"] == 1


def test_sticky_item_waits_for_its_preferred_agent_then_falls_back(world, api_config):
    api_config.capacity = 1
    api_config.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "ann's own", now=at(0))
    route(1)
    assert live(ann) == ["ann's own"]
    enqueue(
        world.support,
        world.chat,
        "returning customer",
        preferred_agent=ann,
        preferred_for=timedelta(seconds=60),
        now=at(2),
    )

    assert route(3).offers == 0  # ann is full: held for her, bob gets nothing
    assert route(63).offers == 1  # preference lapsed
    assert live(bob) == ["returning customer"]


# --- Skills ------------------------------------------------------------------------------------


def give(agent, skill, level):
    AgentSkill.objects.create(agent=agent, skill=skill, level=Decimal(str(level)))


@pytest.fixture
def skills(db):
    return {
        name: Skill.objects.create(name=name, **extra)
        for name, extra in [
            ("Billing", {}),
            ("Japanese", {"attribute": "language", "value": "ja"}),
            ("Spanish", {"attribute": "language", "value": "es"}),
        ]
    }


def test_an_item_goes_only_to_an_agent_with_its_skill_at_the_minimum_level(
    world, api_config, skills
):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    cid = make_agent("cid", queues=[world.support], config=api_config, status=world.available)
    give(bob, skills["Billing"], 3)
    give(cid, skills["Billing"], 5)
    # Ann and Bob are the least active; only Cid has Billing at 5.
    Agent.objects.filter(pk=cid.pk).update(open_count=0, last_assigned_at=at(-1))
    enqueue(
        world.support,
        world.chat,
        "invoice",
        skills=[need(skills["Billing"].pk, 5)],
        now=at(0),
    )

    route(1)

    assert (live(ann), live(bob), live(cid)) == ([], [], ["invoice"])
    assert AgentWork.objects.get().routing_reason["candidates"] == 1


def test_an_additional_skill_drops_after_its_wait_and_the_item_widens(world, api_config, skills):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    item = enqueue(
        world.support,
        world.chat,
        "konnichiwa",
        skills=[need(skills["Japanese"].pk, 2, additional=True, drop_after_seconds=60)],
        now=at(0),
    )

    route(59)
    assert live(ann) == []
    assert WorkItem.objects.get(pk=item.pk).status == "waiting"

    route(60)
    assert live(ann) == ["konnichiwa"]


def test_the_payload_requires_the_skill_matched_to_its_attribute(world, api_config, skills):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    ken = make_agent("ken", queues=[world.support], config=api_config, status=world.available)
    give(ken, skills["Japanese"], 1)
    Agent.objects.filter(pk=ken.pk).update(open_count=3, used_capacity=3)
    item = enqueue(world.support, world.chat, "from Osaka", payload={"language": "ja"}, now=at(0))

    route(1)

    assert list(ItemSkill.objects.filter(item=item).values_list("skill__name", "min_level")) == [
        ("Japanese", Decimal("0.00"))
    ]
    assert (live(ann), live(ken)) == ([], ["from Osaka"])


def test_skills_given_at_intake_win_over_the_payloads_and_are_named_once(world, api_config, skills):
    japanese = skills["Japanese"].pk
    item = enqueue(
        world.support,
        world.chat,
        "x",
        payload={"language": "ja"},
        skills=[need(japanese, 4)],
        now=at(0),
    )
    assert list(ItemSkill.objects.filter(item=item).values_list("skill_id", "min_level")) == [
        (japanese, Decimal("4.00"))
    ]

    with pytest.raises(DomainError) as twice:
        enqueue(world.support, world.chat, "y", skills=[need(japanese, 1), need(japanese, 2)])
    assert twice.value.code == "skills"
    assert WorkItem.objects.count() == 1


def test_best_skilled_sends_to_the_highest_score_and_records_it(world, api_config, skills):
    cfg = world.support.routing_config
    cfg.routing_model = "best_skilled"
    cfg.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    cid = make_agent("cid", queues=[world.support], config=api_config, status=world.available)
    give(ann, skills["Billing"], 9)
    give(ann, skills["Japanese"], 1)
    give(bob, skills["Billing"], "7.5")
    give(bob, skills["Japanese"], 5)
    give(cid, skills["Billing"], 2)
    enqueue(
        world.support,
        world.chat,
        "tricky invoice",
        skills=[need(skills["Billing"].pk, 2), need(skills["Japanese"].pk)],
        now=at(0),
    )
    enqueue(world.support, world.chat, "plain", now=at(1))

    route(2)

    assert live(bob) == ["tricky invoice"]
    why = AgentWork.objects.get(item__subject="tricky invoice").routing_reason
    assert (why["model"], why["score"]) == ("best_skilled", 12.5)
    assert why["text"] == (
        "Best skilled: score 12.5 (Billing 7.5, Japanese 5), best of 2 eligible agents."
    )
    # No requirements: everyone scores 0 and the tie goes to the longest idle (never assigned:
    # the lowest id of those).
    assert live(ann) == ["plain"]


def test_pacing_limits_unanswered_offers_not_accepted_work(world, api_config):
    api_config.max_offers = 2
    api_config.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    for n in range(6):
        enqueue(world.support, world.chat, f"chat {n}", now=at(n * 0.1))

    # Room for all six; two offers at once.
    assert route(1).offers == 2
    assert live(ann) == ["chat 0", "chat 1"]
    assert route(2).offers == 0

    # Accepting one makes room for one more offer; the accepted item no longer counts.
    first = AgentWork.objects.get(agent=ann, item__subject="chat 0")
    services.accept_work(work_id=first.pk, agent=ann, now=at(3))
    assert route(4).offers == 1
    assert live(ann) == ["chat 0", "chat 1", "chat 2"]
    assert load(ann) == (3, 3)

    # Declining one frees its place too (the declined item goes to someone else later).
    second = AgentWork.objects.get(agent=ann, item__subject="chat 1")
    services.decline_work(work_id=second.pk, agent=ann, now=at(5))
    assert route(6).offers == 1
    assert live(ann) == ["chat 0", "chat 2", "chat 3"]


def test_pacing_sends_the_rest_to_agents_under_their_limit(world, api_config):
    paced = PresenceConfigurationFactory(name="paced", max_offers=1, console_required=False)
    ann = make_agent("ann", queues=[world.support], config=paced, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    for n in range(4):
        enqueue(world.support, world.chat, f"chat {n}", now=at(n * 0.1))

    assert route(1).offers == 4
    assert len(live(ann)) == 1
    assert len(live(bob)) == 3


def test_auto_accept_agents_are_not_paced(world):
    # Their offers are opened at once: they never hold one unanswered.
    auto = PresenceConfigurationFactory(
        name="auto", auto_accept=True, console_required=False, max_offers=1
    )
    ann = make_agent("ann", queues=[world.support], config=auto, status=world.available)
    for n in range(3):
        enqueue(world.support, world.chat, f"chat {n}", now=at(n * 0.1))

    assert route(1).offers == 3
    assert load(ann) == (3, 3)


def percent_queue(name: str, percent: int, routing_priority: int = 1):
    return QueueFactory(
        name=name,
        routing_config=RoutingConfigurationFactory(
            name=name.lower(),
            routing_priority=routing_priority,
            size_units=None,
            size_percent=percent,
        ),
    )


def test_half_of_an_odd_capacity_lets_exactly_two_fit(world, api_config):
    # 50 % of 3 is 1.5 units: two fit, and the third is refused for capacity.
    api_config.capacity = 3
    api_config.save()
    half = percent_queue("Half", 50)
    ann = make_agent("ann", queues=[half], config=api_config, status=world.available)
    for n in range(3):
        enqueue(half, world.chat, f"half {n}", now=at(n))

    assert route(10).offers == 2

    assert live(ann) == ["half 0", "half 1"]
    assert load(ann) == (3, 2)
    assert sorted(AgentWork.objects.values_list("units", flat=True)) == [Decimal("1.5")] * 2
    third = WorkItem.objects.get(subject="half 2")
    assert explain_wait(third, now=at(11)) == "No one can take it now: 1 at capacity."
    [(_, why)] = explain_item(third, now=at(11))
    assert (why.reason, why.spare, why.needed) == ("capacity", 0, Decimal("1.5"))
    # Closing one frees exactly its share: the third fits.
    first = AgentWork.objects.get(item__subject="half 0")
    services.accept_work(work_id=first.pk, agent=ann, now=at(12))
    services.close_work(work_id=first.pk, agent=ann, now=at(13))
    assert load(ann) == (Decimal("1.5"), 1)
    assert route(14).offers == 1
    assert load(ann) == (3, 2)
    assert services.reconcile_capacity() == 0


def test_fixed_and_percentage_sizes_share_capacity_exactly(world, api_config):
    # Capacity 3: two chats of the higher-priority queue (1 unit each), then one 33 % item
    # (0.99): 2.99 in all; the next 33 % item finds 0.01 spare.
    api_config.capacity = 3
    api_config.save()
    third = percent_queue("Third", 33, routing_priority=2)
    ann = make_agent("ann", queues=[world.vip, third], config=api_config, status=world.available)
    enqueue(world.vip, world.chat, "chat", now=at(0))
    for n in range(3):
        enqueue(third, world.chat, f"third {n}", now=at(1 + n))
    enqueue(world.vip, world.chat, "chat late", now=at(5))

    route(10)

    assert live(ann) == ["chat", "chat late", "third 0"]
    assert load(ann) == (Decimal("2.99"), 3)
    assert services.reconcile_capacity() == 0
    ann.refresh_from_db()
    assert ann.spare_capacity == Decimal("0.01")


@pytest.mark.parametrize("capacity", [1, 2, 3, 7])
def test_a_third_of_capacity_lets_three_fit_whatever_the_capacity(world, api_config, capacity):
    api_config.capacity = capacity
    api_config.save()
    third = percent_queue("Third", 33)
    ann = make_agent("ann", queues=[third], config=api_config, status=world.available)
    for n in range(4):
        enqueue(third, world.chat, f"third {n}", now=at(n))

    assert route(10).offers == 3

    assert load(ann) == (Decimal(capacity) * Decimal("0.99"), 3)


# --- Exact sizes and pacing where skills-era code writes load ------------------------------------


def test_an_expired_share_frees_exactly_its_units(world, api_config):
    # The sweep's set-based expiry (PostgreSQL: one UPDATE ... FROM unnest of numeric units;
    # SQLite: the ORM twin) frees 1.5 units exactly, and the capacity check agrees.
    api_config.capacity = 3
    api_config.save()
    half = percent_queue("Half", 50)
    ann = make_agent("ann", queues=[half], config=api_config, status=world.available)
    for n in range(2):
        enqueue(half, world.chat, f"half {n}", now=at(n))
    assert route(10).offers == 2
    first = AgentWork.objects.get(item__subject="half 0")
    services.accept_work(work_id=first.pk, agent=ann, now=at(11))

    assert services.expire_offers(now=at(10_000)) == 1

    assert load(ann) == (Decimal("1.5"), 1)
    assert services.reconcile_capacity() == 0
    assert WorkItem.objects.get(subject="half 1").status == "waiting"


def test_push_and_transfer_to_a_person_take_the_exact_share_and_obey_pacing(
    world, api_config, django_user_model
):
    api_config.capacity = 3
    api_config.save()
    paced = PresenceConfigurationFactory(
        name="paced", capacity=3, console_required=False, max_offers=1
    )
    half = percent_queue("Half", 50)
    ann = make_agent("ann", queues=[half], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[half], config=paced, status=world.available)
    boss = django_user_model.objects.create_user("boss", password="boss-pass-123")
    pushed = enqueue(half, world.chat, "pushed", now=at(0))
    held = enqueue(half, world.chat, "held", now=at(0))

    # A push of a 50 % item to Ann takes 1.5 of her 3 units.
    work = services.push_item_to_agent(item_id=pushed.pk, agent=ann, actor=boss, now=at(1))
    assert (work.units, load(ann)) == (Decimal("1.5"), (Decimal("1.5"), 1))
    # A push to Bob reaches his limit of one unanswered offer; a second is refused.
    services.push_item_to_agent(item_id=held.pk, agent=bob, actor=boss, now=at(2))
    services.accept_work(work_id=work.pk, agent=ann, now=at(3))
    with pytest.raises(Conflict) as refused:
        services.transfer_work_to_agent(work_id=work.pk, agent=ann, to_agent=bob, now=at(4))
    assert refused.value.code == "pacing"
    assert load(ann) == (Decimal("1.5"), 1)

    # Once Bob accepts, the transfer goes through: Ann frees 1.5, Bob takes exactly 1.5 more.
    services.accept_work(work_id=AgentWork.objects.get(agent=bob).pk, agent=bob, now=at(5))
    services.transfer_work_to_agent(work_id=work.pk, agent=ann, to_agent=bob, now=at(6))
    assert load(ann) == (0, 0)
    assert load(bob) == (3, 2)
    assert AgentWork.objects.get(agent=bob, item=pushed).units == Decimal("1.5")
    assert services.reconcile_capacity() == 0
