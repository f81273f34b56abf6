"""Customer data scoped by who asks, logged and reversible merges, intake and /help/ that
reveal nothing about other customers."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from messaging import selectors, services
from messaging.models import Case, Conversation, Customer, CustomerIdentity, MergeRecord
from omnirouter.errors import Conflict, Forbidden, NotFound
from routing import services as routing


def _orders_conversation(center):
    """Customer A writes again on WhatsApp, and it is routed to the Orders queue's agent. Her
    number (+1 555..., not a valid one) does not join channels by itself: her WhatsApp id is
    on her record, as an agent adds it."""
    world = center.world
    services.add_customer_identity(
        customer=center.customer_a, kind="whatsapp", value="15550000001", actor=center.admin
    )
    services.receive_inbound(account=world.whatsapp, sender="15550000001", text="Order?")
    conversation = Conversation.objects.get(account=world.whatsapp)
    routing.move_item(item_id=conversation.work_item_id, queue=world.orders, actor=center.admin)
    return conversation


def test_each_role_sees_only_the_conversations_of_its_work_and_queues(center, client):
    # given customer A with one SMS conversation (holder's queue) and one in Orders
    orders = _orders_conversation(center)
    assert orders.customer == center.customer_a

    def seen(role):
        client.force_login(center.user(role))
        body = client.get(f"/api/customers/{center.customer_a.pk}/").json()
        return sorted(c["id"] for c in body["conversations"])

    sms = center.conversation_a.pk
    # then the holder and the colleague see the SMS one, the Orders agent the Orders one,
    # each supervisor their queue's, the admin both
    assert seen("holder") == [sms]
    assert seen("colleague") == [sms]
    assert seen("other") == [orders.pk]
    assert seen("supervisor") == [sms]
    assert seen("other_supervisor") == [orders.pk]
    assert seen("admin") == sorted([sms, orders.pk])


def test_customer_page_and_history_follow_the_same_scope(center, client):
    orders = _orders_conversation(center)
    client.force_login(center.other.user)

    page = client.get(f"/customers/{center.customer_a.pk}/").content.decode()
    refused = client.get(f"/customers/{center.customer_b.pk}/")

    assert "Order?" in page
    assert "A here" not in page
    assert f"Conversation #{orders.pk}" in page
    assert refused.status_code == 404


def test_a_case_is_visible_with_the_conversation_it_came_from(center):
    case = services.open_case_from_conversation(
        conversation_id=center.conversation_a.pk, agent=center.holder, subject="Refund"
    )

    # the case sits in the case queue nobody here is a member of, yet the conversation's
    # agent and supervisor see it; the other queue's people do not
    assert list(selectors.visible_cases(center.holder.user)) == [case]
    assert list(selectors.visible_cases(center.supervisor)) == [case]
    assert list(selectors.visible_cases(center.other.user)) == []
    assert list(selectors.visible_cases(center.intake)) == []


def test_merge_by_the_agent_answering_both_then_undo_restores_exactly_what_moved(center):
    # given B also has an e-mail identity and a case opened from their conversation
    b_email = CustomerIdentity.objects.create(
        customer=center.customer_b, kind="email", value="ben@example.com", created_at=timezone.now()
    )
    case = services.open_case_from_conversation(
        conversation_id=center.conversation_b.pk, agent=center.holder, subject="Refund"
    )
    a_identities = sorted(center.customer_a.identities.values_list("pk", flat=True))

    # when the holder merges B into A
    record = services.merge_customers(
        survivor=center.customer_a, other=center.customer_b, actor=center.holder.user
    )

    # then it is logged with the actor and exactly what moved
    b_phone = center.conversation_b.identity_id
    assert (record.actor, record.survivor, record.merged) == (
        center.holder.user,
        center.customer_a,
        center.customer_b,
    )
    assert record.identity_ids == sorted([b_phone, b_email.pk])
    assert record.conversation_ids == [center.conversation_b.pk]
    assert record.case_ids == [case.pk]
    assert Conversation.objects.filter(customer=center.customer_a).count() == 2
    # and a new conversation through a moved identity lands on the survivor
    routing.close_work(
        work_id=center.holder.works.get(item=center.conversation_b.work_item).pk,
        agent=center.holder,
    )
    services.receive_inbound(account=center.world.sms, sender="+15550000002", text="Me again")
    later = Conversation.objects.get(messages__text="Me again")
    assert later.customer == center.customer_a

    # when it is undone
    undone = services.unmerge_customers(customer=center.customer_a, actor=center.admin)

    # then B has its identities, conversations (and the one since, through its identity) and
    # case back; A keeps exactly its own; B stands alone again
    assert undone.pk == record.pk
    assert (undone.undone_by, undone.undone_at is not None) == (center.admin, True)
    customer_b = Customer.objects.get(pk=center.customer_b.pk)
    assert customer_b.merged_into is None
    assert sorted(customer_b.identities.values_list("pk", flat=True)) == record.identity_ids
    assert sorted(customer_b.conversations.values_list("pk", flat=True)) == sorted(
        [center.conversation_b.pk, later.pk]
    )
    assert list(customer_b.cases.values_list("pk", flat=True)) == [case.pk]
    assert sorted(center.customer_a.identities.values_list("pk", flat=True)) == a_identities
    assert list(center.customer_a.conversations.values_list("pk", flat=True)) == [
        center.conversation_a.pk
    ]
    # and it cannot be undone twice
    with pytest.raises(NotFound, match="No merge"):
        services.unmerge_customers(customer=center.customer_a, actor=center.admin)


def test_undo_waits_for_a_later_merge_of_the_survivor(center):
    third = services.identify_or_create_customer(kind="email", value="c@example.com").customer
    first = services.merge_customers(
        survivor=center.customer_a, other=center.customer_b, actor=center.admin
    )
    services.merge_customers(survivor=third, other=center.customer_a, actor=center.admin)

    with pytest.raises(Conflict, match="undo that merge first"):
        services.unmerge_customers(
            customer=center.customer_a, merge_id=first.pk, actor=center.admin
        )
    # undoing the later one first, then the first, restores both
    services.unmerge_customers(customer=third, actor=center.admin)
    services.unmerge_customers(customer=center.customer_a, merge_id=first.pk, actor=center.admin)
    assert center.conversation_b.__class__.objects.get(pk=center.conversation_b.pk).customer_id == (
        center.customer_b.pk
    )
    assert not Customer.objects.filter(merged_into__isnull=False).exists()


def test_merge_refusals_write_nothing(center):
    # an agent who holds only one side, a colleague who holds neither, an agent who cannot
    # see the customers, an intake client
    third = services.identify_or_create_customer(kind="email", value="c@example.com").customer
    with pytest.raises(NotFound):  # the holder cannot see the third customer at all
        services.merge_customers(survivor=center.customer_a, other=third, actor=center.holder.user)
    with pytest.raises(Forbidden, match="supervisor"):
        services.merge_customers(
            survivor=center.customer_a, other=center.customer_b, actor=center.colleague.user
        )
    with pytest.raises(NotFound):
        services.merge_customers(
            survivor=center.customer_a, other=center.customer_b, actor=center.other.user
        )
    with pytest.raises(NotFound):
        services.merge_customers(
            survivor=center.customer_a, other=center.customer_b, actor=center.intake
        )

    assert MergeRecord.objects.count() == 0
    assert not Customer.objects.filter(merged_into__isnull=False).exists()
    assert center.customer_b.conversations.count() == 1


def test_undo_through_the_page(center, client):
    record = services.merge_customers(
        survivor=center.customer_a, other=center.customer_b, actor=center.supervisor
    )
    client.force_login(center.supervisor)

    page = client.get(f"/customers/{center.customer_a.pk}/").content.decode()
    response = client.post(f"/customers/{center.customer_a.pk}/unmerge/", {"merge": record.pk})

    assert f"Customer #{center.customer_b.pk} merged in by sup" in page
    assert response.status_code == 302
    record.refresh_from_db()
    assert record.undone_by == center.supervisor


# --- Intake --------------------------------------------------------------------------------


def _intake_case(client, center, **fields):
    client.force_login(center.intake)
    return client.post(
        "/api/cases/", {"subject": "Callback", "name": "Someone", **fields},
        content_type="application/json",
    )  # fmt: skip


def test_intake_answers_the_same_for_known_and_unknown_addresses(center, client):
    known = _intake_case(client, center, phone="+1 555 000 0001")
    unknown = _intake_case(client, center, phone="+1 555 999 0009")
    by_id = _intake_case(client, center, customer=center.customer_a.pk)

    assert (known.status_code, unknown.status_code) == (201, 201)
    strip = {"id", "work_item_id", "created_at", "updated_at"}
    shape = {k: v for k, v in known.json().items() if k not in strip}
    assert shape == {k: v for k, v in unknown.json().items() if k not in strip}
    assert "customer_id" not in known.json()
    assert "Ana" not in known.content.decode()
    # the known phone found its customer; the unknown one made a new one
    assert Case.objects.get(pk=known.json()["id"]).customer == center.customer_a
    assert Case.objects.get(pk=unknown.json()["id"]).customer.display_name == "Someone"
    # naming a customer by id is refused, and writes nothing
    assert by_id.status_code == 400
    assert Case.objects.count() == 2


def test_intake_cannot_read_the_case_item_that_names_the_customer(center, client):
    created = _intake_case(client, center, identity={"kind": "phone", "value": "+15550000001"})
    item_id = Case.objects.get(pk=created.json()["id"]).work_item_id

    response = client.get(f"/api/work-items/{item_id}/")

    assert response.status_code == 404


# --- Self-service help ---------------------------------------------------------------------


def _help(client, email, subject="Wrong size"):
    form = {"name": "Mallory", "email": email, "subject": subject, "description": "Please"}
    return client.post("/help/", form)


def _link(message):
    return re.search(r"http://testserver(/help/confirm/\S+/)", message.body).group(1)


def test_help_case_under_a_known_email_is_unverified_until_confirmed(
    center, client, django_capture_on_commit_callbacks
):
    # given Ana is known by her e-mail
    CustomerIdentity.objects.create(
        customer=center.customer_a, kind="email", value="ana@example.com", created_at=timezone.now()
    )

    # when someone files a case with her address
    with django_capture_on_commit_callbacks(execute=True):
        sent = _help(client, "Ana@Example.com")
    case = Case.objects.get(origin="web")

    # then it is on her record, unverified, and a confirmation link went to her address only
    assert case.customer == center.customer_a
    assert case.is_unverified
    assert case.work_item.payload["unverified"] is True
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ana@example.com"]
    assert f"#{case.pk}" in mail.outbox[0].subject
    status_page = client.get(sent["Location"]).content.decode()
    assert "We sent a confirmation link" in status_page
    assert "Ana" not in status_page
    # and agents see it flagged, on the customer page and in the history panel
    client.force_login(center.admin)
    assert "Unverified" in client.get(f"/customers/{center.customer_a.pk}/").content.decode()
    cases = client.get(f"/api/customers/{center.customer_a.pk}/").json()["cases"]
    assert [(c["id"], c["unverified"]) for c in cases] == [(case.pk, True)]

    # when she follows the link
    client.logout()
    confirmed = client.get(_link(mail.outbox[0]))

    # then the case is verified, its console payload too
    assert confirmed.status_code == 200
    case.refresh_from_db()
    assert (case.verification, case.verified_at is not None) == ("verified", True)
    assert case.work_item.payload["unverified"] is False
    assert client.get(_link(mail.outbox[0])).status_code == 200  # idempotent


def test_help_answers_the_same_for_known_and_unknown_addresses(
    center, client, django_capture_on_commit_callbacks
):
    CustomerIdentity.objects.create(
        customer=center.customer_a, kind="email", value="ana@example.com", created_at=timezone.now()
    )
    with django_capture_on_commit_callbacks(execute=True):
        known = _help(client, "ana@example.com", subject="Same")
        unknown = _help(client, "new@example.com", subject="Same")

    def page(response):
        html = client.get(response["Location"]).content.decode()
        panel = html[html.index('<div class="panel help-panel">') :]
        panel = panel[: panel.index("</div>")]
        return re.sub(r"#\d+", "#N", re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d", "T", panel))

    assert (known.status_code, unknown.status_code) == (302, 302)
    assert page(known) == page(unknown)
    assert [m.to for m in mail.outbox] == [["ana@example.com"], ["new@example.com"]]
    new_case = Case.objects.get(customer__identities__value="new@example.com")
    assert (new_case.is_unverified, new_case.customer.display_name) == (True, "Mallory")


def test_confirmation_links_expire_and_cannot_be_forged(
    center, client, settings, django_capture_on_commit_callbacks
):
    settings.MESSAGING_CASE_CONFIRM_MAX_AGE_SECONDS = 3600
    with django_capture_on_commit_callbacks(execute=True):
        _help(client, "new@example.com")
    token = _link(mail.outbox[0]).split("/")[-2]
    case = Case.objects.get(origin="web")

    with pytest.raises(services.DomainError, match="expired"):
        services.confirm_case_requester(token=token, now=timezone.now() + timedelta(hours=2))
    forged = client.get(f"/help/confirm/{token[:-2]}xx/")

    assert forged.status_code == 400
    assert "invalid or has expired" in forged.content.decode()
    case.refresh_from_db()
    assert case.is_unverified
