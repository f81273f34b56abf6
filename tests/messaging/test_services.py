"""Customers across channels, merging, sticky routing, inactivity, and routing consistency."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.utils import timezone

from messaging import services
from messaging.models import Case, Conversation, Customer
from omnirouter import fanout, realtime
from omnirouter.errors import Conflict, DomainError, Forbidden
from routing import services as routing
from routing.models import AgentWork, WorkItem
from routing.services import records
from tests.factories import PresenceConfigurationFactory, make_agent
from tests.messaging.conftest import post_meta, post_twilio, sms_params, whatsapp_payload


def _sms(client, world, sender, text, sid):
    assert (
        post_twilio(client, world.sms, sms_params(world.sms, sender, text, sid)).status_code == 200
    )


def test_same_phone_lands_on_the_same_customer(world, client):
    _sms(client, world, "+15551230001", "Hi", "SM01")
    _sms(client, world, "+1 (555) 123-0001", "Still there?", "SM02")

    assert Customer.objects.count() == 1
    conversation = Conversation.objects.get()
    assert list(conversation.messages.values_list("text", flat=True)) == ["Hi", "Still there?"]


def test_whatsapp_id_of_a_known_phone_joins_that_customer(world, client):
    _sms(client, world, "+1 (415) 555-0100", "Hi by SMS", "SM01")

    post_meta(
        client,
        world.whatsapp,
        whatsapp_payload(world.whatsapp, "14155550100", "Hi by WA", "wamid.1"),
    )

    customer = Customer.objects.get()
    assert sorted((i.kind, i.value, i.match_key) for i in customer.identities.all()) == [
        ("phone", "+14155550100", "tel:+14155550100"),
        ("whatsapp", "14155550100", "tel:+14155550100"),
    ]
    assert customer.conversations.count() == 2
    assert customer.display_name == "Yuki Sato"


def test_an_invalid_number_is_kept_and_never_joins_another_channel(world, client):
    # "+1 555 123 0001" is no valid number (no area code 555): kept, matched only exactly
    _sms(client, world, "+1 555 123-0001", "Hi by SMS", "SM01")
    post_meta(
        client,
        world.whatsapp,
        whatsapp_payload(world.whatsapp, "15551230001", "Hi by WA", "wamid.1"),
    )

    assert sorted(Customer.objects.values_list("identities__kind", "identities__value")) == [
        ("phone", "+15551230001"),
        ("whatsapp", "15551230001"),
    ]
    assert Customer.objects.count() == 2


def test_merge_joins_histories(world, client):
    # given one person known on SMS and on Messenger as two customers, with a case on one
    _sms(client, world, "+15551230001", "Hi by SMS", "SM01")
    services.receive_inbound(account=world.messenger, sender="PSID-1", text="Hi on Messenger")
    phone, psid = Customer.objects.order_by("pk")
    case = services.open_case(subject="Refund", customer=psid, origin="messenger")
    actor = get_user_model().objects.create_superuser("admin", password="x")

    # when an administrator merges them
    survivor = services.merge_customers(survivor=phone, other=psid, actor=actor).survivor

    # then every identity, conversation and case is on the survivor
    assert survivor == phone
    assert sorted(survivor.identities.values_list("kind", flat=True)) == ["messenger", "phone"]
    assert sorted(survivor.conversations.values_list("messages__text", flat=True)) == [
        "Hi by SMS",
        "Hi on Messenger",
    ]
    case.refresh_from_db()
    assert case.customer == survivor
    psid.refresh_from_db()
    assert (psid.merged_into, psid.merged_by) == (survivor, actor)
    # and a new message from the merged identity lands on the survivor
    services.receive_inbound(account=world.messenger, sender="PSID-1", text="Again")
    assert Conversation.objects.get(messages__text="Again").customer == survivor
    # and merging again is refused with a reason
    with pytest.raises(Conflict, match="already merged"):
        services.merge_customers(survivor=survivor, other=psid, actor=actor)
    with pytest.raises(DomainError, match="itself"):
        services.merge_customers(survivor=survivor, other=survivor, actor=actor)


def test_accept_and_close_keep_conversation_and_work_in_step(world, client):
    _sms(client, world, "+15551230001", "Hi", "SM01")
    alice = world.agent("alice")
    routing.route_waiting_work()
    work = alice.works.get()

    routing.accept_work(work_id=work.pk, agent=alice)
    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.assigned_agent) == ("active", alice)

    services.close_conversation(conversation_id=conversation.pk, by="agent", agent=alice)
    conversation.refresh_from_db()
    work.refresh_from_db()
    assert (conversation.status, conversation.ended_by) == ("ended", "agent")
    assert work.state == "closed"
    assert WorkItem.objects.get().status == "closed"
    alice.refresh_from_db()
    assert alice.used_capacity == 0


def _offered(world, client, username="alice"):
    """A customer's SMS conversation offered to one agent."""
    _sms(client, world, "+15551230001", "Hi", "SM01")
    agent = world.agent(username)
    routing.route_waiting_work()
    return Conversation.objects.get(), agent, agent.works.get()


def _received(group: str, callbacks) -> list[tuple[str, dict]]:
    """Run captured after-commit callbacks and return the (event, payload) pairs that a channel
    in ``group`` received through the real channel layer, in order."""
    layer = get_channel_layer()

    async def listen() -> list[tuple[str, dict]]:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        for callback in callbacks:
            callback()
        assert fanout.flush()
        # Everything published is in the channel now; a last message of our own marks the end.
        await layer.send(channel, {"type": "end"})
        received = []
        while (message := await asyncio.wait_for(layer.receive(channel), 10))["type"] != "end":
            received.append((message["event"], message["payload"]))
        return received

    return asyncio.run(listen())


def test_accepting_through_routing_makes_the_conversation_active_at_once(
    world, client, django_capture_on_commit_callbacks
):
    # given a conversation offered to alice
    conversation, alice, work = _offered(world, client)
    assert conversation.status == "waiting"

    # when she accepts through routing alone (the generic console, the REST API)
    with django_capture_on_commit_callbacks() as callbacks:
        routing.accept_work(work_id=work.pk, agent=alice)

        # then the conversation is active with her in the same transaction, no maintenance run
        conversation.refresh_from_db()
        assert (conversation.status, conversation.assigned_agent) == ("active", alice)
    # and her console hears of it after commit
    changed = [
        (payload["id"], payload["status"], payload["agent_id"])
        for event, payload in _received(realtime.agent_group(alice.pk), callbacks)
        if event == realtime.CONVERSATION_CHANGED
    ]
    assert changed == [(conversation.pk, "active", alice.pk)]


def test_closing_through_routing_ends_the_conversation(world, client):
    conversation, alice, work = _offered(world, client)
    routing.accept_work(work_id=work.pk, agent=alice)

    routing.close_work(work_id=work.pk, agent=alice)

    conversation.refresh_from_db()
    assert (conversation.status, conversation.ended_by, conversation.assigned_agent) == (
        "ended",
        "agent",
        alice,
    )
    assert conversation.ended_at is not None


def test_decline_and_timeout_leave_the_conversation_waiting(world, client):
    conversation, alice, work = _offered(world, client)

    routing.decline_work(work_id=work.pk, agent=alice)
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assigned_agent) == ("waiting", None)

    bob = world.agent("bob")
    routing.route_waiting_work()
    offer = bob.works.get()
    assert routing.expire_offers(now=offer.expires_at + timedelta(seconds=1)) == 1
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assigned_agent) == ("waiting", None)


def test_transfer_puts_the_conversation_back_to_waiting_and_the_next_accept_takes_it(world, client):
    conversation, alice, work = _offered(world, client)
    routing.accept_work(work_id=work.pk, agent=alice)

    routing.transfer_work(work_id=work.pk, agent=alice, queue=world.orders)
    conversation.refresh_from_db()
    assert conversation.status == "waiting"

    bob = world.agent("bob")
    routing.set_presence(agent=alice, status=None)
    routing.route_waiting_work()
    routing.accept_work(work_id=bob.works.get().pk, agent=bob)
    conversation.refresh_from_db()
    assert (conversation.status, conversation.assigned_agent) == ("active", bob)


def test_canceling_the_item_ends_the_conversation_by_the_system(world, client):
    conversation, _alice, _work = _offered(world, client)

    routing.cancel_work_item(item_id=conversation.work_item_id)

    conversation.refresh_from_db()
    assert (conversation.status, conversation.ended_by) == ("ended", "system")


def test_auto_accepted_offer_makes_the_conversation_active_in_the_pass(world, client):
    _sms(client, world, "+15551230001", "Hi", "SM01")
    carol = make_agent(
        "carol",
        queues=[world.queue],
        config=PresenceConfigurationFactory(capacity=10, console_required=False, auto_accept=True),
        status=world.status,
    )

    routing.route_waiting_work()

    conversation = Conversation.objects.get()
    assert (conversation.status, conversation.assigned_agent) == ("active", carol)
    assert carol.works.get().state == "opened"


@pytest.fixture
def failing_accept_hook():
    def refuse(change):
        raise RuntimeError("the conversation cannot be updated")

    records.register(Conversation, on_accepted=refuse)
    yield
    services.register_routing_hooks()


def test_a_failing_hook_rolls_the_accept_back(
    world, client, failing_accept_hook, django_capture_on_commit_callbacks
):
    conversation, alice, work = _offered(world, client)

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError, match="cannot be updated"),
    ):
        routing.accept_work(work_id=work.pk, agent=alice)

    # nothing was written, nothing published
    work.refresh_from_db()
    conversation.refresh_from_db()
    assert (work.state, work.opened_at) == ("pushed", None)
    assert WorkItem.objects.get().status == "offered"
    assert (conversation.status, conversation.assigned_agent) == ("waiting", None)
    assert callbacks == []


def test_cases_follow_their_work_items(world, client):
    customer = services.identify_or_create_customer(kind="email", value="a@example.com").customer
    case = services.open_case(subject="Refund", customer=customer, origin="web")
    alice = world.agent("alice")
    routing.route_waiting_work()
    work = alice.works.get()

    routing.accept_work(work_id=work.pk, agent=alice)
    case.refresh_from_db()
    assert case.status == "open"

    routing.close_work(work_id=work.pk, agent=alice)
    case.refresh_from_db()
    assert case.status == "closed"
    assert case.closed_at is not None


def test_maintenance_no_longer_reconciles(world, client):
    assert set(services.run_maintenance()) == {"idle_ended", "redriven"}


def test_only_the_holding_agent_may_reply_or_close(world, client):
    _sms(client, world, "+15551230001", "Hi", "SM01")
    alice, bob = world.agent("alice"), world.agent("bob", online=False)
    routing.route_waiting_work()
    conversation = Conversation.objects.get()

    with pytest.raises(Forbidden):
        services.send_reply(conversation_id=conversation.pk, agent=alice, text="Not accepted yet")
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    with pytest.raises(Forbidden):
        services.send_reply(conversation_id=conversation.pk, agent=bob, text="Not mine")
    with pytest.raises(Forbidden):
        services.close_conversation(conversation_id=conversation.pk, by="agent", agent=bob)
    with pytest.raises(DomainError, match="Write a message first"):
        services.send_reply(conversation_id=conversation.pk, agent=alice, text="   ")
    assert conversation.messages.filter(direction="out").count() == 0


def test_reply_after_end_opens_a_new_conversation_for_the_previous_agent(world, client):
    # given alice handled the customer's conversation, which ended
    _sms(client, world, "+15551230001", "Hi", "SM01")
    alice = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    first = Conversation.objects.get()
    services.close_conversation(conversation_id=first.pk, by="agent", agent=alice)
    bob = world.agent("bob")  # bob is online with more room than alice's zero load: no matter

    # when the customer writes again
    now = timezone.now()
    services.receive_inbound(
        account=world.sms, sender="+15551230001", text="One more thing", now=now
    )

    # then a new conversation opens, held for alice
    second = Conversation.objects.exclude(pk=first.pk).get()
    item = second.work_item
    assert (item.preferred_agent, item.preferred_until) == (alice, now + timedelta(seconds=60))
    assert item.payload["preferred_agent"] == {"id": alice.pk, "name": "alice"}
    routing.route_waiting_work(now=now + timedelta(seconds=1))
    assert AgentWork.objects.get(item=item).agent == alice
    assert not bob.works.exists()


def test_a_previous_agent_who_no_longer_serves_the_queue_is_not_waited_for(world, client):
    # given alice handled the customer's conversation, then left the queue
    _sms(client, world, "+15551230001", "Hi", "SM01")
    alice = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    first = Conversation.objects.get()
    services.close_conversation(conversation_id=first.pk, by="agent", agent=alice)
    alice.memberships.all().delete()

    # when the customer writes again
    services.receive_inbound(account=world.sms, sender="+15551230001", text="Again")

    # then the new item waits for no one in particular
    item = Conversation.objects.exclude(pk=first.pk).get().work_item
    assert (item.preferred_agent, item.preferred_until) == (None, None)
    assert "preferred_agent" not in item.payload


def test_sticky_item_falls_back_to_another_agent_after_the_window(world, client):
    _sms(client, world, "+15551230001", "Hi", "SM01")
    alice = world.agent("alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    first = Conversation.objects.get()
    services.close_conversation(conversation_id=first.pk, by="agent", agent=alice)
    # alice is online but has no room (five 2-unit cases fill her 10 units)
    bob = world.agent("bob", online=False)
    for n in range(5):
        routing.enqueue_work(queue=world.cases, channel=world.case, subject=f"case {n}")
    routing.route_waiting_work()
    alice.refresh_from_db()
    assert alice.spare_capacity == 0
    routing.set_presence(agent=bob, status=world.status)
    now = timezone.now()

    services.receive_inbound(account=world.sms, sender="+15551230001", text="Again", now=now)
    item = Conversation.objects.exclude(pk=first.pk).get().work_item

    routing.route_waiting_work(now=now + timedelta(seconds=30))
    assert not AgentWork.objects.filter(item=item).exists()
    routing.route_waiting_work(now=now + timedelta(seconds=61))
    assert AgentWork.objects.get(item=item).agent == bob


def test_inactivity_ends_conversations_and_frees_the_agent(world, client, settings):
    settings.MESSAGING_INACTIVITY_MINUTES = 30
    start = timezone.now()
    services.receive_inbound(account=world.sms, sender="+15551230001", text="Hi", now=start)
    services.receive_inbound(account=world.sms, sender="+15551230002", text="Hi", now=start)
    alice = world.agent("alice")
    routing.route_waiting_work()
    accepted = alice.works.order_by("pk").first()
    routing.accept_work(work_id=accepted.pk, agent=alice)
    services.receive_inbound(
        account=world.sms, sender="+15551230003", text="Hi", now=start + timedelta(minutes=20)
    )

    ended = services.end_idle_conversations(now=start + timedelta(minutes=31))

    assert ended == 2
    assert sorted(Conversation.objects.values_list("identity__value", "status", "ended_by")) == [
        ("+15551230001", "ended", "timeout"),
        ("+15551230002", "ended", "timeout"),
        ("+15551230003", "waiting", ""),
    ]
    accepted.refresh_from_db()
    assert accepted.state == "closed"
    assert sorted(WorkItem.objects.values_list("status", flat=True)) == [
        "canceled",
        "closed",
        "waiting",
    ]
    assert services.end_idle_conversations(now=start + timedelta(minutes=31)) == 0


def test_open_case_routes_it_on_the_case_channel(world):
    customer = services.identify_or_create_customer(
        kind="email", value="Ana@Example.com", name="Ana"
    ).customer

    case = services.open_case(
        subject="Damaged parcel",
        description="Box crushed",
        customer=customer,
        origin="api",
        priority="high",
    )

    item = case.work_item
    assert (item.channel, item.queue, item.priority, item.status) == (
        world.case,
        world.cases,
        3,
        "waiting",
    )
    assert item.payload["case_id"] == case.pk
    assert item.record == case
    assert customer.identities.get().value == "ana@example.com"
    with pytest.raises(DomainError, match="subject"):
        services.open_case(subject=" ", customer=customer, origin="api")
    assert Case.objects.count() == 1
