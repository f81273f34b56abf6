"""A customer ending a conversation while an agent accepts it through routing, at the same time,
on PostgreSQL: routing's hook locks the conversation after routing's rows, and messaging's close
takes routing's locks first, so neither waits on the other in a cycle."""

from __future__ import annotations

import contextlib
import threading

from django.db import connections

from messaging import services
from messaging.models import Conversation, Customer, MergeRecord
from omnirouter.errors import Conflict, Forbidden
from presence.models import Agent
from routing import services as routing
from routing.models import AgentWork

CONVERSATIONS = 12


def test_customer_close_racing_an_accept_never_deadlocks_and_leaves_no_live_work(
    world, transactional_db
):
    # given twelve conversations, each offered to alice
    for n in range(CONVERSATIONS):
        services.receive_inbound(account=world.sms, sender=f"+1555123{n:04d}", text="Hi")
    alice = world.agent("alice")
    routing.route_waiting_work()
    offers = list(alice.works.order_by("pk").values_list("pk", "item_id"))
    assert len(offers) == 10  # her capacity: the other two wait
    conversations = {
        c.work_item_id: c.pk for c in Conversation.objects.filter(work_item__isnull=False)
    }

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(action):
        def body():
            try:
                start.wait()
                action()
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        return body

    def agent_accepts():
        for work_id, _item_id in offers:
            with contextlib.suppress(Conflict):  # the customer left first
                routing.accept_work(work_id=work_id, agent=alice)

    def customers_leave():
        for _work_id, item_id in offers:
            services.close_conversation(conversation_id=conversations[item_id], by="customer")

    # when the agent accepts them while the customers end them
    threads = [threading.Thread(target=run(t)) for t in (agent_accepts, customers_leave)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then nothing hung or failed, every raced conversation ended by its customer, and no work
    # or capacity is left behind
    assert not [t for t in threads if t.is_alive()], "a thread hung (deadlock?)"
    assert errors == []
    raced = Conversation.objects.filter(pk__in=[conversations[i] for _, i in offers])
    assert sorted(set(raced.values_list("status", "ended_by"))) == [("ended", "customer")]
    assert not AgentWork.objects.filter(agent=alice, state__in=["pushed", "opened"]).exists()
    assert Agent.objects.values_list("used_capacity", "open_count").get(pk=alice.pk) == (0, 0)


def test_replies_racing_closes_through_routing_never_deadlock(world, transactional_db):
    # given alice holding ten accepted conversations
    for n in range(10):
        services.receive_inbound(account=world.sms, sender=f"+1555123{n:04d}", text="Hi")
    alice = world.agent("alice")
    routing.route_waiting_work()
    works = list(alice.works.order_by("pk"))
    for work in works:
        routing.accept_work(work_id=work.pk, agent=alice)
    conversations = dict(Conversation.objects.values_list("work_item_id", "pk"))

    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def run(action):
        def body():
            try:
                start.wait()
                action()
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        return body

    def replies():
        # each reply holds its conversation and names the agent (a key-share lock on her row)
        for work in works:
            with contextlib.suppress(Conflict, Forbidden):  # closed first
                services.send_reply(
                    conversation_id=conversations[work.item_id], agent=alice, text="One moment"
                )

    def closes():
        # each close holds the agent's row, then its hook locks the conversation
        for work in works:
            routing.close_work(work_id=work.pk, agent=alice)

    # when she replies in one tab while closing them from the generic console in another
    threads = [threading.Thread(target=run(t)) for t in (replies, closes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    # then nothing hung or failed, and every conversation ended with its work
    assert not [t for t in threads if t.is_alive()], "a thread hung (deadlock?)"
    assert errors == []
    assert sorted(set(Conversation.objects.values_list("status", "ended_by"))) == [
        ("ended", "agent")
    ]
    assert Agent.objects.values_list("used_capacity", "open_count").get(pk=alice.pk) == (0, 0)


def test_two_merges_of_the_same_customers_at_once_do_not_interleave(center, transactional_db):
    # given customers A and B, merged into each other by two supervisors at the same moment
    a, b, admin = center.customer_a, center.customer_b, center.admin
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def merge(survivor, other):
        def body():
            try:
                start.wait()
                services.merge_customers(survivor=survivor, other=other, actor=admin)
            except BaseException as exc:  # reported below
                errors.append(exc)
            finally:
                connections.close_all()

        return body

    threads = [threading.Thread(target=merge(a, b)), threading.Thread(target=merge(b, a))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # then exactly one merge happened, the other was refused, and the rows agree with it
    assert not [t for t in threads if t.is_alive()]
    assert [type(e) for e in errors] == [Conflict]
    (record,) = MergeRecord.objects.all()
    gone = Customer.objects.get(pk=record.merged_id)
    assert gone.merged_into_id == record.survivor_id
    assert Customer.objects.get(pk=record.survivor_id).merged_into_id is None
    assert set(Conversation.objects.values_list("customer_id", flat=True)) == {record.survivor_id}
