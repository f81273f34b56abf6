"""What each routing service tells consoles and dashboards, after commit.

For every service: a success publishes exactly the expected events (group and type, in order); a
refusal publishes nothing and writes nothing. Runs on PostgreSQL and on SQLite (the SQLite pass of
``./dev test``).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model

from omnirouter import realtime
from omnirouter.errors import Conflict, DomainError, Forbidden, NotFound
from presence.models import Agent, PresenceStatus
from routing import services
from routing.models import ActionLog, AgentWork, Queue, RoutingConfiguration, WorkItem
from tests.factories import PresenceConfigurationFactory, enqueue, make_agent
from tests.routing.scenario import at, route

pytestmark = pytest.mark.usefixtures("fast_passwords")

OFFER = realtime.OFFER
WORK = realtime.WORK_CHANGED
PRESENCE = realtime.PRESENCE_CHANGED
QUEUE = realtime.QUEUE_CHANGED


def agent_(agent: Agent) -> str:
    return realtime.agent_group(agent.pk)


def queue_(queue: Queue) -> str:
    return realtime.queue_group(queue.pk)


def rows() -> dict[str, list[dict[str, Any]]]:
    """Every row a routing service may write: compared before and after a refusal."""
    models = (WorkItem, AgentWork, Agent, ActionLog, Queue, RoutingConfiguration, PresenceStatus)
    return {m.__name__: list(m.objects.order_by("pk").values()) for m in models}


@pytest.fixture
def ann(world, api_config) -> Agent:
    return make_agent("ann", queues=[world.support], config=api_config, status=world.available)


@pytest.fixture
def offer(world, ann) -> AgentWork:
    """A chat item of the support queue, offered to ann at 1 s."""
    enqueue(world.support, world.chat, "chat", now=at(0))
    route(1)
    return AgentWork.objects.get(agent=ann)


@pytest.fixture
def accepted(offer, ann) -> AgentWork:
    services.accept_work(work_id=offer.pk, agent=ann, now=at(2))
    return offer


@pytest.fixture
def supervisor(db):
    return get_user_model().objects.create_user("sue", password="supervisor-pass-123")


def refused(published, error: type[Exception], action, match: str | None = None) -> None:
    """``action`` raises ``error``, publishes nothing and writes nothing."""
    before = rows()
    with published() as events, pytest.raises(error, match=match):
        action()
    assert events == []
    assert rows() == before


# --- intake ---------------------------------------------------------------------------------


def test_enqueue_tells_the_queue(world, published):
    with published() as events:
        enqueue(world.support, world.chat, "new", now=at(0))

    assert events == [(queue_(world.support), QUEUE)]


def test_enqueue_refused(world, published):
    refused(
        published,
        DomainError,
        lambda: enqueue(world.support, world.chat, "x", priority=11, now=at(0)),
        "Priority",
    )


def test_cancel_withdraws_the_offer_and_tells_agent_and_queue(world, ann, offer, published):
    with published() as events:
        services.cancel_work_item(item_id=offer.item_id, now=at(2))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.support), QUEUE),
    ]


def test_cancel_refused(accepted, published):
    refused(
        published,
        Conflict,
        lambda: services.cancel_work_item(item_id=accepted.item_id, now=at(3)),
        "assigned",
    )
    refused(published, NotFound, lambda: services.cancel_work_item(item_id=10**9, now=at(3)))


# --- the pass -------------------------------------------------------------------------------


def test_pass_offers_and_tells_agent_and_queue(world, ann, published):
    enqueue(world.support, world.chat, "chat", now=at(0))

    with published() as events:
        assert route(1).offers == 1

    assert events == [(agent_(ann), OFFER), (queue_(world.support), QUEUE), (agent_(ann), PRESENCE)]


def test_pass_with_nothing_to_do_publishes_nothing(world, ann, published):
    before = rows()
    with published() as events:
        assert route(1).offers == 0
    assert events == []
    assert rows() == before


# --- an agent's actions ---------------------------------------------------------------------


def test_accept(world, ann, offer, published):
    with published() as events:
        services.accept_work(work_id=offer.pk, agent=ann, now=at(2))

    assert events == [(agent_(ann), WORK), (queue_(world.support), QUEUE)]


def test_accept_refused(world, ann, offer, api_config, published):
    bob = make_agent("bob", queues=[world.support], config=api_config, status=world.available)
    refused(
        published, NotFound, lambda: services.accept_work(work_id=offer.pk, agent=bob, now=at(2))
    )
    refused(
        published,
        Conflict,
        lambda: services.accept_work(work_id=offer.pk, agent=ann, now=at(31)),
        "timed out",
    )


def test_decline(world, ann, offer, published):
    with published() as events:
        services.decline_work(work_id=offer.pk, agent=ann, now=at(2))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.support), QUEUE),
    ]


def test_decline_refused(world, ann, accepted, api_config, published):
    refused(
        published,
        Conflict,
        lambda: services.decline_work(work_id=accepted.pk, agent=ann, now=at(3)),
        "no longer be declined",
    )
    api_config.allow_decline = False
    api_config.save()
    ann.refresh_from_db()
    refused(
        published,
        Forbidden,
        lambda: services.decline_work(work_id=accepted.pk, agent=ann, now=at(3)),
    )


def test_close(world, ann, accepted, published):
    with published() as events:
        services.close_work(work_id=accepted.pk, agent=ann, now=at(3))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
    ]


def test_close_refused(ann, offer, published):
    refused(
        published,
        Conflict,
        lambda: services.close_work(work_id=offer.pk, agent=ann, now=at(2)),
        "Only accepted work",
    )


def test_transfer(world, ann, accepted, published):
    with published() as events:
        services.transfer_work(work_id=accepted.pk, agent=ann, queue=world.vip, now=at(3))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.vip), QUEUE),
    ]


def test_transfer_refused(world, ann, offer, published):
    refused(
        published,
        Conflict,
        lambda: services.transfer_work(work_id=offer.pk, agent=ann, queue=world.vip, now=at(2)),
        "Only accepted work",
    )


# --- presence -------------------------------------------------------------------------------


def test_going_busy_returns_the_offer_and_tells_agent_and_queue(world, ann, offer, published):
    with published() as events:
        services.set_presence(agent=ann, status=world.busy, now=at(2))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.support), QUEUE),
        (agent_(ann), PRESENCE),
        (queue_(world.support), QUEUE),
    ]


def test_set_presence_refused(world, ann, offer, api_config, published):
    api_config.allowed_statuses.set([world.available])
    ann.refresh_from_db()
    refused(
        published,
        DomainError,
        lambda: services.set_presence(agent=ann, status=world.busy, now=at(2)),
        "not available to you",
    )


def test_heartbeat_publishes_nothing(ann, published):
    with published() as events:
        services.touch_console(agent=ann, now=at(1))
        services.touch_console(agent=ann.pk, now=at(2))  # within the write interval

    assert events == []
    assert Agent.objects.get(pk=ann.pk).console_seen_at == at(1)


# --- a supervisor's actions -----------------------------------------------------------------


def test_move_withdraws_the_offer_and_tells_both_queues(world, ann, offer, supervisor, published):
    with published() as events:
        services.move_item(item_id=offer.item_id, queue=world.vip, actor=supervisor, now=at(2))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.vip), QUEUE),
        (queue_(world.support), QUEUE),
    ]


def test_move_refused(world, accepted, supervisor, published):
    refused(
        published,
        Conflict,
        lambda: services.move_item(
            item_id=accepted.item_id, queue=world.vip, actor=supervisor, now=at(3)
        ),
        "Only waiting or offered",
    )


def test_push(world, ann, supervisor, published):
    item = enqueue(world.support, world.chat, "for ann", now=at(0))

    with published() as events:
        services.push_item_to_agent(item_id=item.pk, agent=ann, actor=supervisor, now=at(1))

    assert events == [(agent_(ann), OFFER), (agent_(ann), PRESENCE), (queue_(world.support), QUEUE)]


def test_push_refused(world, ann, supervisor, published):
    item = enqueue(world.support, world.case, "big case", now=at(0))
    services.set_presence(agent=ann, status=None, now=at(0))
    refused(
        published,
        Conflict,
        lambda: services.push_item_to_agent(
            item_id=item.pk, agent=ann, actor=supervisor, now=at(1)
        ),
        "ann cannot take this item: offline",
    )


# --- the sweep ------------------------------------------------------------------------------


def test_expire_times_out_the_offer_and_applies_the_status_after_timeout(world, published):
    config = PresenceConfigurationFactory(
        name="strict", console_required=False, status_after_timeout=world.busy
    )
    ann = make_agent("ann", queues=[world.support], config=config, status=world.available)
    enqueue(world.support, world.chat, "nobody home", now=at(0))
    route(1)

    with published() as events:
        assert services.expire_offers(now=at(31)) == 1

    # One of each, whatever the number of changes: the offer, the agent's new load and status,
    # the queue (the offer's, and the agent's queues for the status).
    assert events == [(agent_(ann), WORK), (agent_(ann), PRESENCE), (queue_(world.support), QUEUE)]


def test_expiring_many_offers_tells_each_agent_and_each_queue_once(world, published):
    config = PresenceConfigurationFactory(
        name="strict", console_required=False, status_after_timeout=world.busy
    )
    ann = make_agent("ann", queues=[world.support], config=config, status=world.available)
    bob = make_agent("bob", queues=[world.vip], config=config, status=world.available)
    for n in range(2):
        enqueue(world.support, world.chat, f"support {n}", now=at(0))
        enqueue(world.vip, world.chat, f"vip {n}", now=at(0))
    route(1)
    works = list(AgentWork.objects.order_by("pk").values_list("agent_id", flat=True))

    with published() as events:
        assert services.expire_offers(now=at(31)) == 4

    assert events == [
        *[(realtime.agent_group(agent_id), WORK) for agent_id in works],
        (agent_(ann), PRESENCE),
        (agent_(bob), PRESENCE),
        *[(queue_(q), QUEUE) for q in sorted([world.support, world.vip], key=lambda q: q.pk)],
    ]


def test_expire_before_the_deadline_publishes_and_writes_nothing(offer, published):
    before = rows()
    with published() as events:
        assert services.expire_offers(now=at(30)) == 0
    assert events == []
    assert rows() == before


# --- configuration edits --------------------------------------------------------------------


def test_new_routing_priority_tells_the_queues_with_live_items(world, offer, published):
    enqueue(world.vip, world.chat, "untouched", now=at(0))
    config = world.support.routing_config

    with published() as events:
        services.update_routing_config(config=config, changes={"routing_priority": 7})

    assert events == [(queue_(world.support), QUEUE)]
    assert WorkItem.objects.get(pk=offer.item_id).routing_priority == 7


def test_routing_config_edit_refused(world, offer, published):
    config = RoutingConfiguration.objects.get(pk=world.support.routing_config_id)
    refused(
        published,
        DomainError,
        lambda: services.update_routing_config(config=config, changes={"routing_priority": 0}),
    )


def test_queue_moved_to_another_configuration_tells_the_queue(world, offer, published):
    queue = Queue.objects.get(pk=world.support.pk)

    with published() as events:
        services.save_queue(queue=queue, changes={"routing_config": world.vip.routing_config})

    assert events == [(queue_(world.support), QUEUE)]
    assert WorkItem.objects.get(pk=offer.item_id).routing_priority == 1


def test_queue_edit_refused(world, offer, published):
    queue = Queue.objects.get(pk=world.support.pk)
    refused(
        published,
        DomainError,
        lambda: services.save_queue(queue=queue, changes={"name": world.vip.name}),
    )


def test_status_no_longer_covering_chat_returns_the_offer(world, ann, offer, published):
    status = PresenceStatus.objects.get(pk=world.available.pk)

    with published() as events:
        services.update_presence_status(status=status, changes={}, channels=[world.case], now=at(2))

    assert events == [
        (agent_(ann), PRESENCE),
        (agent_(ann), WORK),
        (queue_(world.support), QUEUE),
        (queue_(world.support), QUEUE),
    ]


def test_status_edit_refused(world, offer, published):
    status = PresenceStatus.objects.get(pk=world.available.pk)
    refused(
        published,
        DomainError,
        lambda: services.update_presence_status(
            status=status, changes={"name": ""}, channels=[world.case], now=at(2)
        ),
    )
