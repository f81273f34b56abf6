"""Who may take an item, read from the database: the engine's rule behind why-still-waiting and
a supervisor's push, on PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from omnirouter.errors import Conflict
from presence.models import Agent
from routing import engine, services
from routing.models import ActionLog, AgentSkill, AgentWork, Skill, WorkItem
from routing.selectors import agent_views, explain_item, explain_wait, reason_text
from routing.services.skills import need
from tests.factories import PresenceConfigurationFactory, enqueue, make_agent

T0 = timezone.now().replace(microsecond=0)


def at(seconds: float):
    return T0 + timedelta(seconds=seconds)


def clock(when) -> str:
    return timezone.localtime(when).strftime("%H:%M:%S")


@pytest.fixture
def boss(db):
    return get_user_model().objects.create_user("boss", password="boss-pass-123")


def test_explain_wait_counts_the_engines_reasons(world, api_config, settings):
    settings.CONSOLE_GRACE_SECONDS = 30
    console = PresenceConfigurationFactory(name="console", console_required=True)
    make_agent("off1", queues=[world.support], config=api_config)
    make_agent("off2", queues=[world.support], config=api_config)
    make_agent("busy", queues=[world.support], config=api_config, status=world.busy)
    make_agent("ghost", queues=[world.support], config=console, status=world.available)
    full = make_agent("full", queues=[world.support], config=api_config, status=world.available)
    Agent.objects.filter(pk=full.pk).update(used_capacity=10)
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "why me", now=at(0))
    services.route_waiting_work(now=at(1))
    work = AgentWork.objects.get(item=item)
    assert work.agent == ann
    services.decline_work(work_id=work.pk, agent=ann, now=at(2))
    item.refresh_from_db()

    assert explain_wait(item, now=at(3)) == (
        "No one can take it now: 2 offline, 1 without a live console, 1 not available for Chat,"
        f" 1 at capacity, 1 refused it (offered again after {clock(at(62))})."
    )
    # After the cooldown the only agent who could take it may have it again.
    assert explain_wait(item, now=at(62)) == (
        "1 eligible agent has room: it will be offered on the next routing pass."
    )


def test_explain_wait_for_an_empty_queue_a_preferred_agent_and_an_item_no_longer_waiting(
    world, api_config
):
    lonely = enqueue(world.vip, world.chat, "nobody", now=at(0))
    assert explain_wait(lonely, now=at(1)) == "The queue has no members."

    api_config.capacity = 1
    api_config.save()
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "ann's own", now=at(0))
    services.route_waiting_work(now=at(1))
    sticky = enqueue(
        world.support,
        world.chat,
        "returning",
        preferred_agent=ann,
        preferred_for=timedelta(seconds=60),
        now=at(2),
    )
    assert explain_wait(sticky, now=at(3)) == (
        f"Held for its preferred agent until {clock(at(62))}: 1 at capacity."
    )
    services.route_waiting_work(now=at(63))
    sticky.refresh_from_db()
    assert explain_wait(sticky, now=at(63)) == "Not waiting: Offered."


def test_push_refuses_an_agent_whose_status_lacks_the_items_channel(world, api_config, boss):
    # given Ann "Available - Chat" and a case waiting in her queue
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.chat_only)
    item = enqueue(world.support, world.case, "a case", now=at(0))

    # when a supervisor pushes it to her
    with pytest.raises(Conflict) as refused:
        services.push_item_to_agent(item_id=item.pk, agent=ann, actor=boss, now=at(1))

    # then it is refused, naming why, and nothing was written
    assert refused.value.code == "channel"
    assert refused.value.message == "ann cannot take this item: not available for Case."
    assert AgentWork.objects.count() == 0
    assert ActionLog.objects.count() == 0
    assert WorkItem.objects.get().status == "waiting"
    ann.refresh_from_db()
    assert (ann.used_capacity, ann.open_count) == (0, 0)


@pytest.mark.parametrize(
    ("setup", "code", "text"),
    [
        ("offline", "offline", "offline"),
        ("busy", "channel", "not available for Chat"),
        ("full", "capacity", "at capacity (0 spare, needs 1)"),
        ("outsider", "not_member", "not a member of the queue"),
        ("no console", "no_console", "no live console"),
        # A push is an offer: it obeys the agent's limit of offers at once.
        ("paced", "pacing", "holds 1 unanswered offer, the most their configuration allows"),
    ],
)
def test_push_refuses_with_the_engines_reason(world, api_config, boss, setup, code, text):
    config = api_config
    if setup == "no console":
        config = PresenceConfigurationFactory(name="console", console_required=True)
    if setup == "paced":
        config = PresenceConfigurationFactory(name="paced", console_required=False, max_offers=1)
    queue = world.vip if setup == "outsider" else world.support
    status = {"offline": None, "busy": world.busy}.get(setup, world.available)
    ann = make_agent("ann", queues=[queue], config=config, status=status)
    if setup == "full":
        Agent.objects.filter(pk=ann.pk).update(used_capacity=10)
    if setup == "paced":
        enqueue(world.support, world.chat, "pending", now=at(0))
        services.route_waiting_work(now=at(0))
    item = enqueue(world.support, world.chat, "x", now=at(0))

    with pytest.raises(Conflict) as refused:
        services.push_item_to_agent(item_id=item.pk, agent=ann, actor=boss, now=at(1))

    assert (refused.value.code, refused.value.message) == (
        code,
        f"ann cannot take this item: {text}.",
    )
    assert AgentWork.objects.count() == (1 if setup == "paced" else 0)


def test_push_overrides_a_refusal_still_cooling_down(world, api_config, boss):
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "try again", now=at(0))
    services.route_waiting_work(now=at(1))
    services.decline_work(work_id=AgentWork.objects.get().pk, agent=ann, now=at(2))

    work = services.push_item_to_agent(item_id=item.pk, agent=ann, actor=boss, now=at(3))

    assert (work.agent, work.state, work.units) == (ann, "pushed", 1)


def test_agent_views_reads_any_number_of_agents_in_four_queries(
    world, api_config, settings, django_assert_num_queries
):
    settings.CONSOLE_GRACE_SECONDS = 30
    console = PresenceConfigurationFactory(name="console", console_required=True)
    for n in range(12):
        make_agent(
            f"a{n:02}",
            queues=[world.support, world.vip][: 1 + n % 2],
            config=console if n % 3 == 0 else api_config,
            status=[world.available, world.chat_only, world.busy, None][n % 4],
        )
    seen = Agent.objects.get(user__username="a03")
    services.touch_console(agent=seen, now=at(0))

    with django_assert_num_queries(4):
        views = agent_views(Agent.objects.all(), now=at(10))

    assert len(views) == 12
    a00 = views[Agent.objects.get(user__username="a00").pk]
    assert (a00.online, a00.console_live, a00.channel_ids) == (
        True,
        False,
        frozenset({world.chat.pk, world.case.pk}),
    )
    a03 = views[seen.pk]
    assert (a03.online, a03.console_live, a03.queue_ids) == (
        False,
        True,
        frozenset({world.support.pk, world.vip.pk}),
    )
    a02 = views[Agent.objects.get(user__username="a02").pk]
    assert (a02.online, a02.channel_ids, engine.has_room(a02)) == (True, frozenset(), False)


def test_explain_wait_names_the_skills_in_force_and_when_an_additional_one_drops(world, api_config):
    billing = Skill.objects.create(name="Billing")
    japanese = Skill.objects.create(name="Japanese")
    make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    cid = make_agent("cid", queues=[world.support], config=api_config, status=world.available)
    off = make_agent("off", queues=[world.support], config=api_config)
    AgentSkill.objects.create(agent=bob, skill=billing, level=Decimal("3"))
    AgentSkill.objects.create(agent=cid, skill=billing, level=Decimal("7.5"))
    AgentSkill.objects.create(agent=off, skill=billing, level=Decimal("9"))
    item = enqueue(
        world.support,
        world.chat,
        "invoice in Japanese",
        skills=[
            need(billing.pk, 5),
            need(japanese.pk, additional=True, drop_after_seconds=120),
        ],
        now=at(0),
    )

    assert explain_wait(item, now=at(1)) == (
        "No one can take it now: 4 without a required skill."
        " Needs Billing ≥ 5: 1 online agent lacks it, 1 has level 3;"
        f" Japanese (additional, drops at {clock(at(120))}): 3 online agents lack it."
    )
    # Japanese has dropped: Cid can take it.
    assert explain_wait(item, now=at(120)) == (
        "1 eligible agent has room: it will be offered on the next routing pass."
    )
    # The same reason for one agent, as a push pick list shows it.
    texts = {
        agent.user.username: reason_text(why, channel="Chat") if why else None
        for agent, why in explain_item(item, now=at(1))
    }
    assert texts == {
        "ann": "lacks Billing",
        "bob": "has Billing at level 3, needs 5",
        "cid": "lacks Japanese",
        "off": "lacks Japanese",
    }


def test_push_obeys_the_items_skills(world, api_config, boss, fast_passwords):
    billing = Skill.objects.create(name="Billing")
    ann = make_agent("ann", queues=[world.support], config=api_config, status=world.available)
    item = enqueue(world.support, world.chat, "invoice", skills=[need(billing.pk, 5)], now=at(0))

    with pytest.raises(Conflict) as refused:
        services.push_item_to_agent(item_id=item.pk, agent=ann, actor=boss, now=at(1))

    assert (refused.value.code, refused.value.message) == (
        "skill",
        "ann cannot take this item: lacks Billing.",
    )
    assert AgentWork.objects.count() == 0
    AgentSkill.objects.create(agent=ann, skill=billing, level=Decimal("5"))
    work = services.push_item_to_agent(item_id=item.pk, agent=ann, actor=boss, now=at(2))
    assert (work.agent, work.state) == (ann, "pushed")


def test_explain_wait_names_agents_at_their_offer_limit(world, api_config, fast_passwords):
    paced = PresenceConfigurationFactory(name="paced", console_required=False, max_offers=2)
    ann = make_agent("ann", queues=[world.support], config=paced, status=world.available)
    for n in range(3):
        enqueue(world.support, world.chat, f"chat {n}", now=at(n))
    services.route_waiting_work(now=at(5))
    third = WorkItem.objects.get(subject="chat 2")

    assert explain_wait(third, now=at(6)) == (
        "No one can take it now: 1 at their limit of unanswered offers."
    )
    views = agent_views(Agent.objects.filter(pk=ann.pk), now=at(6))
    assert (views[ann.pk].pending_offers, views[ann.pk].max_offers) == (2, 2)
    # Accepting one leaves room for another offer.
    services.accept_work(
        work_id=AgentWork.objects.filter(agent=ann).first().pk, agent=ann, now=at(7)
    )
    assert explain_wait(third, now=at(8)) == (
        "1 eligible agent has room: it will be offered on the next routing pass."
    )
