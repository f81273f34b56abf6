"""The customer's whole story: the timeline API (scoped, searchable, paged), the "also wrote on"
line, and the inbound hot path's query count."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone, translation

from messaging import services, timeline
from messaging.models import Conversation


def _timeline(client, user, customer, **params):
    client.force_login(user)
    return client.get(f"/api/customers/{customer.pk}/timeline/", params)


def _entries(response):
    assert response.status_code == 200, response.content
    return [
        (e["type"], (e.get("conversation") or e.get("case"))["id"])
        for e in response.json()["results"]
    ]


def test_the_timeline_shows_only_what_the_asker_may_see_newest_first(center, client):
    # given customer A's SMS conversation (world.queue) and a later case routed to Orders
    case = services.open_case(
        subject="Refund for order LU-1",
        customer=center.customer_a,
        origin="api",
        queue=center.world.orders,
        now=timezone.now() + timedelta(minutes=1),
    )
    conversation = ("conversation", center.conversation_a.pk)

    # then each role sees its part: the holder the conversation, Orders' people the case,
    # the administrator both, newest first; an outsider's customer id does not exist
    assert _entries(_timeline(client, center.holder.user, center.customer_a)) == [conversation]
    assert _entries(_timeline(client, center.other_supervisor, center.customer_a)) == [
        ("case", case.pk)
    ]
    assert _entries(_timeline(client, center.admin, center.customer_a)) == [
        ("case", case.pk),
        conversation,
    ]
    assert _timeline(client, center.other.user, center.customer_b).status_code == 404
    assert _timeline(client, center.intake, center.customer_a).status_code == 403


def test_the_timeline_searches_messages_and_case_subjects_and_pages(center, client):
    case = services.open_case(
        subject="Refund for order LU-1",
        customer=center.customer_a,
        origin="api",
        now=timezone.now() + timedelta(minutes=1),
    )
    admin = center.admin

    refund = _timeline(client, admin, center.customer_a, q="REFUND")
    assert _entries(refund) == [("case", case.pk)]
    said = _timeline(client, admin, center.customer_a, q="a here").json()
    (entry,) = said["results"]
    first = center.conversation_a.messages.get()
    assert entry["conversation"]["matches"] == [first.pk]
    assert [m["text"] for m in entry["conversation"]["messages"]] == ["A here"]
    assert _entries(_timeline(client, admin, center.customer_a, q="nowhere")) == []

    page1 = _timeline(client, admin, center.customer_a, page_size=1).json()
    page2 = _timeline(client, admin, center.customer_a, page_size=1, page=2).json()
    assert [(p["page"], p["next_page"], len(p["results"])) for p in (page1, page2)] == [
        (1, 2, 1),
        (2, None, 1),
    ]
    assert _timeline(client, admin, center.customer_a, page=0).status_code == 400


def test_the_timeline_costs_the_same_queries_however_long_the_story(
    center, django_assert_num_queries
):
    for n in range(6):
        services.open_case(subject=f"Case {n}", customer=center.customer_a, origin="api")
    holder = center.holder.user
    # the holder's roles, the page (one UNION), its transcripts and their messages (no case
    # is theirs to see, so no case query)
    with django_assert_num_queries(4):
        page = timeline.customer_timeline(center.customer_a, holder)
    assert len(page["results"]) == 1  # the holder sees the conversation, not the cases


def test_a_returning_customer_shows_where_else_they_wrote(world, client):
    # given Ana wrote by SMS two days ago, and writes on WhatsApp now
    now = timezone.now()
    sms = services.receive_inbound(
        account=world.sms, sender="+14155550100", text="Hi", now=now - timedelta(days=2)
    ).message.conversation
    services.close_conversation(conversation_id=sms.pk, by="customer", now=now - timedelta(days=2))
    wa = services.receive_inbound(account=world.whatsapp, sender="14155550100", text="Hi again")
    new = wa.message.conversation
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", password="x")

    # then the agent's view of the new conversation says so, in English and in Japanese
    client.force_login(root)
    body = client.get(f"/api/conversations/{new.pk}/").json()
    assert body["also_wrote"]["text"] == "Also wrote on SMS 2 days ago"
    assert body["also_wrote"]["conversation_id"] == sms.pk
    japanese = client.get(f"/api/conversations/{new.pk}/", HTTP_ACCEPT_LANGUAGE="ja").json()
    assert japanese["also_wrote"]["text"] == "2日前にSMSでも連絡がありました"
    one_day = now - timedelta(days=2) + timedelta(days=1, hours=1)
    with translation.override("en"):
        assert timeline.also_wrote(new, root, now=one_day)["text"] == "Also wrote on SMS 1 day ago"
    with translation.override("ja"):
        assert (
            timeline.also_wrote(new, root, now=one_day)["text"] == "1日前にSMSでも連絡がありました"
        )
    with translation.override("en"):
        assert timeline.also_wrote(sms, root)["text"] == "Also writing on WhatsApp now"
    first = services.receive_inbound(account=world.sms, sender="+14155550111", text="New")
    assert timeline.also_wrote(first.message.conversation, root) is None


def test_a_known_customers_message_costs_the_same_queries(world, django_assert_num_queries):
    services.receive_inbound(
        account=world.sms, sender="+14155550100", text="Hi", provider_message_id="SM1"
    )
    # the customer lookup is one query whatever the number of customers; the rest is the
    # message itself (savepoint, identity lock, dedupe, conversation lock, insert, activity,
    # the customer's name and who to tell for the agents' event, release)
    with django_assert_num_queries(10):
        services.receive_inbound(
            account=world.sms,
            sender="+1 415 555 0100",
            text="Still there?",
            provider_message_id="SM2",
        )
    assert Conversation.objects.get().messages.count() == 2
