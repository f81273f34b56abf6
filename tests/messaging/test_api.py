"""The messaging API and pages: customer record, merge, cases, conversations, self-service help."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from messaging import services
from messaging.models import Case, Conversation, Customer
from routing import services as routing


def _accepted(world, sender="+15551230001", text="Hi"):
    services.receive_inbound(account=world.sms, sender=sender, text=text, provider_message_id="S1")
    alice = world.agent("alice", first_name="Alice")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get().pk, agent=alice)
    return Conversation.objects.get(), alice


def test_conversation_detail_shows_the_transcript(world, client):
    conversation, alice = _accepted(world)
    client.force_login(alice.user)

    response = client.get(f"/api/conversations/{conversation.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["agent_id"], body["channel"]) == ("active", alice.pk, "sms")
    assert [m["text"] for m in body["messages"]] == ["Hi"]
    assert body["customer"]["identities"] == [
        {"kind": "phone", "kind_label": "Phone number", "value": "+15551230001"}
    ]
    assert body["customer_url"] == f"/customers/{conversation.customer_id}/"


def test_reply_and_close_through_the_api(world, client):
    conversation, alice = _accepted(world)
    client.force_login(alice.user)

    reply = client.post(
        f"/api/conversations/{conversation.pk}/reply/",
        {"text": "On it"},
        content_type="application/json",
    )
    empty = client.post(
        f"/api/conversations/{conversation.pk}/reply/",
        {"text": ""},
        content_type="application/json",
    )
    closed = client.post(
        f"/api/conversations/{conversation.pk}/close/", {}, content_type="application/json"
    )
    again = client.post(
        f"/api/conversations/{conversation.pk}/close/", {}, content_type="application/json"
    )

    assert reply.status_code == 201
    assert (reply.json()["text"], reply.json()["status"], reply.json()["author"]) == (
        "On it",
        "queued",
        "agent",
    )
    assert empty.status_code == 400
    assert closed.status_code == 200
    assert closed.json()["status"] == "ended"
    assert again.status_code == 409
    assert again.json()["detail"] == "This conversation has already ended."


def test_someone_elses_conversation_is_refused(world, client):
    conversation, _alice = _accepted(world)
    bob = world.agent("bob", online=False)
    client.force_login(bob.user)

    response = client.post(
        f"/api/conversations/{conversation.pk}/reply/",
        {"text": "Hi"},
        content_type="application/json",
    )

    assert response.status_code == 403
    assert response.json()["detail"] == "This conversation is not assigned to you."
    assert conversation.messages.filter(direction="out").count() == 0


def test_customer_record_and_merge(world, client):
    # given Alice answering a conversation and holding a case of another customer
    conversation, alice = _accepted(world)
    other = services.identify_or_create_customer(kind="email", value="yuki@example.com").customer
    services.open_case(subject="Invoice", customer=other, origin="api")
    routing.route_waiting_work()
    routing.accept_work(work_id=alice.works.get(state="pushed").pk, agent=alice)
    client.force_login(alice.user)

    merged = client.post(
        f"/api/customers/{conversation.customer_id}/merge/",
        {"other": other.pk},
        content_type="application/json",
    )
    record = client.get(f"/api/customers/{conversation.customer_id}/")
    via_old_id = client.get(f"/api/customers/{other.pk}/")

    assert merged.status_code == 200
    body = record.json()
    assert [i["kind"] for i in body["identities"]] == ["email", "phone"]
    assert [c["id"] for c in body["conversations"]] == [conversation.pk]
    assert [c["subject"] for c in body["cases"]] == ["Invoice"]
    assert via_old_id.json()["id"] == conversation.customer_id


def test_cases_api_for_intake_clients(world, client):
    user = get_user_model().objects.create_user("crm", password="x")
    user.groups.add(Group.objects.create(name="intake"))
    client.force_login(user)

    created = client.post(
        "/api/cases/",
        {"subject": "Broken zip", "email": "ana@example.com", "name": "Ana", "priority": "urgent"},
        content_type="application/json",
    )
    missing = client.post(
        "/api/cases/", {"subject": "No customer"}, content_type="application/json"
    )

    assert created.status_code == 201
    case = Case.objects.get()
    assert (case.customer.display_name, case.priority, case.origin) == ("Ana", "urgent", "api")
    assert case.work_item.priority == 1
    assert missing.status_code == 400
    assert Case.objects.count() == 1


def test_customers_are_not_for_anonymous_or_plain_users(world, client):
    customer = services.identify_or_create_customer(kind="email", value="a@example.com").customer
    assert client.get(f"/api/customers/{customer.pk}/").status_code == 401
    client.force_login(get_user_model().objects.create_user("plain", password="x"))
    assert client.get(f"/api/customers/{customer.pk}/").status_code == 403
    assert client.get(f"/customers/{customer.pk}/").status_code == 403


def test_customer_page_shows_every_channel_newest_first(world, client):
    conversation, alice = _accepted(world, text="First by SMS")
    customer = conversation.customer
    services.open_case(subject="Refund please", customer=customer, origin="sms")
    client.force_login(alice.user)

    page = client.get(f"/customers/{customer.pk}/").content.decode()

    assert page.index("Refund please") < page.index("First by SMS")
    assert "+15551230001" in page


def test_self_service_case_and_private_status_link(world, client):
    csrf_client = client.__class__(enforce_csrf_checks=True)
    page = csrf_client.get("/help/")
    token = page.cookies["csrftoken"].value
    form = {
        "name": "Ana Lima",
        "email": "ana@example.com",
        "subject": "Wrong size",
        "description": "I got an L instead of an M.",
    }

    refused = csrf_client.post("/help/", form)
    sent = csrf_client.post("/help/", {**form, "csrfmiddlewaretoken": token})

    assert refused.status_code == 403
    case = Case.objects.get()
    assert sent.status_code == 302
    assert sent["Location"] == f"/help/cases/{case.access_token}/"
    status_page = client.get(sent["Location"]).content.decode()
    assert "Wrong size" in status_page
    assert "New" in status_page
    assert (case.origin, case.customer.display_name) == ("web", "Ana Lima")
    assert case.work_item.queue == world.cases
    assert client.get("/help/cases/not-a-token/").status_code == 404
    assert Customer.objects.get().identities.get().value == "ana@example.com"


def test_demo_shop_embeds_the_widget(world, client):
    page = client.get("/demo/shop/").content.decode()

    assert f'data-account="{world.webchat.public_key}"' in page
    assert "/static/js/webchat.js" in page
