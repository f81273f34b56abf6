"""One customer across channels: normalised addresses, the one-query lookup, proving an address
by a one-time code, suggested matches, and grouping a second channel with the same agent."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.utils import timezone

from messaging import identity, linking, services
from messaging.models import (
    Case,
    ClaimStatus,
    Conversation,
    Customer,
    CustomerIdentity,
    IdentityClaim,
    Message,
)
from omnirouter.errors import Forbidden
from routing import services as routing
from routing.models import AgentWork

# --- Normalisation (no database) ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "given", "value", "match_key"),
    [
        ("phone", "+1 (415) 555-0100", "+14155550100", "tel:+14155550100"),
        ("phone", "(415) 555-0100", "+14155550100", "tel:+14155550100"),  # default region US
        ("phone", "+14155550100", "+14155550100", "tel:+14155550100"),
        ("phone", "011 81 90-1234-5678", "+819012345678", "tel:+819012345678"),  # US exit code
        ("phone", "+81 90-1234-5678", "+819012345678", "tel:+819012345678"),
        ("whatsapp", "14155550100", "14155550100", "tel:+14155550100"),
        ("whatsapp", "+81 90 1234 5678", "819012345678", "tel:+819012345678"),
        # not valid numbers: kept (punctuation out), never a match key
        ("phone", "+1 555 123-0001", "+15551230001", None),
        ("phone", "12345", "12345", None),
        ("phone", "0044 20 7946 0000", "+442079460000", None),  # 00 is no exit code in the US
        ("whatsapp", "15551230001", "15551230001", None),
        (
            "email",
            "  Ana.Lopez@Example.COM ",
            "ana.lopez@example.com",
            "mailto:ana.lopez@example.com",
        ),
        ("email", "not an address", "not an address", None),
        ("messenger", " 7100000000000001 ", "7100000000000001", None),
    ],
)
def test_addresses_get_one_spelling_and_a_match_key(settings, kind, given, value, match_key):
    settings.PHONE_DEFAULT_REGION = "US"
    assert identity.normalize(kind, given) == identity.Address(kind, value, match_key)


def test_a_national_number_is_read_in_the_default_region(settings):
    settings.PHONE_DEFAULT_REGION = "JP"
    assert identity.normalize("phone", "090-1234-5678").value == "+819012345678"


# --- Lookup ----------------------------------------------------------------------------------


def test_a_known_address_is_found_in_one_query(world, django_assert_num_queries):
    services.identify_or_create_customer(kind="phone", value="+14155550100")

    with django_assert_num_queries(1):
        found = services.identify_or_create_customer(kind="phone", value="+1 (415) 555-0100")
    assert found.value == "+14155550100"


def test_the_same_number_on_another_channel_joins_in_one_lookup_and_one_insert(
    world, django_assert_num_queries
):
    customer = services.identify_or_create_customer(kind="phone", value="+14155550100").customer

    with django_assert_num_queries(4):  # the lookup; the insert in a savepoint
        found = services.identify_or_create_customer(kind="whatsapp", value="14155550100")
    assert found.customer == customer
    assert Customer.objects.count() == 1


def test_emails_match_whatever_their_case(world):
    first = services.identify_or_create_customer(kind="email", value="Ana@Example.com")
    again = services.identify_or_create_customer(kind="email", value=" ana@example.COM")
    assert again == first
    assert CustomerIdentity.objects.count() == 1


# --- Proving an address another customer has ------------------------------------------------


def _held(agent, account, sender, text="Hi"):
    """A conversation from ``sender`` on ``account``, accepted by ``agent``."""
    services.receive_inbound(account=account, sender=sender, text=text)
    routing.route_waiting_work()
    for work in agent.works.filter(state="pushed"):
        routing.accept_work(work_id=work.pk, agent=agent)
    return Conversation.objects.get(
        account=account, identity__value=identity.normalize_address(account.identity_kind, sender)
    )


@pytest.fixture
def known_and_anonymous(world):
    """Ana, known by SMS (an ended conversation and a case); the same person writing on
    Messenger now, a new customer, answered by alice."""
    sms = services.receive_inbound(account=world.sms, sender="+14155550100", text="Old question")
    old = sms.message.conversation
    services.close_conversation(conversation_id=old.pk, by="customer")
    alice = world.agent("alice")
    messenger = _held(alice, world.messenger, "PSID-1", "Hi, it's Ana")
    case = services.open_case(subject="Refund", customer=old.customer, origin="sms")
    return old.customer, messenger, alice, case


def _add_phone(conversation, alice, captured):
    with captured(execute=True):
        return services.add_customer_identity(
            customer=conversation.customer,
            kind="phone",
            value="(415) 555-0100",
            actor=alice.user,
            conversation=conversation,
        )


def _write(world, text, *, now=None):
    return services.receive_inbound(account=world.messenger, sender="PSID-1", text=text, now=now)


def test_the_right_code_merges_the_customers(
    world, fake_provider, known_and_anonymous, django_capture_on_commit_callbacks
):
    known, messenger, alice, case = known_and_anonymous

    # when alice adds the phone number the Messenger customer gives
    outcome = _add_phone(messenger, alice, django_capture_on_commit_callbacks)

    # then a code went by SMS to the known number, only its hash is stored, and the customer was
    # told in Messenger where to look
    assert outcome.status == "code_sent"
    (sent,) = fake_provider.requests
    assert sent.form()["To"] == ["+14155550100"]
    assert outcome.code in sent.form()["Body"][0]
    claim = IdentityClaim.objects.get()
    assert (claim.status, claim.sent_to, claim.attempts) == ("pending", "•••0100", 0)
    assert outcome.code not in claim.code_hash
    told = messenger.messages.filter(direction="out").get()
    assert "•••0100" in told.text
    assert "six digits" in told.text

    # when the customer types it back on Messenger
    with django_capture_on_commit_callbacks(execute=True):
        _write(world, f" {outcome.code} ")

    # then the Messenger customer is merged into the known one: every conversation, message and
    # case on one record, the merge logged without an actor
    claim.refresh_from_db()
    assert claim.status == "verified"
    assert (claim.merge.actor, claim.merge.merged_id) == (None, messenger.customer_id)
    assert set(Conversation.objects.values_list("customer_id", flat=True)) == {known.pk}
    assert Case.objects.get().customer_id == known.pk
    assert sorted(known.identities.values_list("kind", "value")) == [
        ("messenger", "PSID-1"),
        ("phone", "+14155550100"),
    ]
    assert Message.objects.filter(conversation__customer=known).count() == 5


def test_a_wrong_code_leaves_tries_then_turns_into_a_suggestion(
    world, known_and_anonymous, django_capture_on_commit_callbacks, settings
):
    settings.MESSAGING_IDENTITY_CODE_MAX_ATTEMPTS = 3
    known, messenger, alice, _case = known_and_anonymous
    outcome = _add_phone(messenger, alice, django_capture_on_commit_callbacks)
    wrong = "000000" if outcome.code != "000000" else "111111"

    _write(world, wrong)
    _write(world, wrong)
    claim = IdentityClaim.objects.get()
    assert (claim.status, claim.attempts) == ("pending", 2)
    assert messenger.messages.order_by("-pk").first().text == (
        "That code is not right. You can try 1 more time."
    )
    _write(world, wrong)

    claim.refresh_from_db()
    assert (claim.status, claim.attempts, claim.merge) == ("suggested", 3, None)
    # the right code now changes nothing: the claim is not pending any more
    _write(world, outcome.code)
    assert Customer.objects.filter(merged_into__isnull=False).count() == 0
    assert [
        s["customer_id"] for s in linking.suggested_matches(messenger.customer, alice.user)
    ] == [known.pk]


def test_an_expired_code_is_refused(world, known_and_anonymous, django_capture_on_commit_callbacks):
    _known, messenger, alice, _case = known_and_anonymous
    outcome = _add_phone(messenger, alice, django_capture_on_commit_callbacks)

    later = timezone.now() + timedelta(minutes=11)
    with django_capture_on_commit_callbacks(execute=True):
        _write(world, outcome.code, now=later)

    assert IdentityClaim.objects.get().status == ClaimStatus.SUGGESTED
    assert Customer.objects.filter(merged_into__isnull=False).count() == 0
    assert messenger.messages.order_by("-pk").first().text.startswith("This code has expired.")


def test_six_digits_without_a_pending_code_are_an_ordinary_message(world):
    services.receive_inbound(account=world.messenger, sender="PSID-2", text="Hello")
    result = services.receive_inbound(account=world.messenger, sender="PSID-2", text="123456")
    assert (result.created, result.message.text) == (True, "123456")
    assert not IdentityClaim.objects.exists()


def test_an_email_code_goes_by_mail(world, django_capture_on_commit_callbacks):
    services.identify_or_create_customer(kind="email", value="ana@example.com")
    alice = world.agent("alice")
    messenger = _held(alice, world.messenger, "PSID-1")

    with django_capture_on_commit_callbacks(execute=True):
        outcome = services.add_customer_identity(
            customer=messenger.customer,
            kind="email",
            value="ANA@example.com",
            actor=alice.user,
            conversation=messenger,
        )

    assert outcome.status == "code_sent"
    (message,) = mail.outbox
    assert message.to == ["ana@example.com"]
    assert outcome.code in message.body
    assert IdentityClaim.objects.get().sent_to == "a•••@example.com"


def test_the_bot_claims_the_email_it_asks_for(world, django_capture_on_commit_callbacks):
    services.identify_or_create_customer(kind="email", value="ana@example.com")
    world.messenger.bot_flow = [{"key": "email", "ask": "Your e-mail?"}]
    world.messenger.save(update_fields=["bot_flow"])
    services.receive_inbound(account=world.messenger, sender="PSID-1", text="Hi")

    with django_capture_on_commit_callbacks(execute=True):
        services.receive_inbound(account=world.messenger, sender="PSID-1", text="ana@example.com")

    claim = IdentityClaim.objects.get()
    assert (claim.status, claim.created_by) == ("pending", None)
    assert len(mail.outbox) == 1


def test_a_new_address_is_added_at_once_and_an_own_one_changes_nothing(world):
    alice = world.agent("alice")
    messenger = _held(alice, world.messenger, "PSID-1")
    add = {"customer": messenger.customer, "actor": alice.user, "conversation": messenger}

    added = services.add_customer_identity(kind="email", value="New@Example.com", **add)
    again = services.add_customer_identity(kind="email", value="new@example.com", **add)

    assert (added.status, again.status) == ("added", "already")
    assert added.identity.customer == messenger.customer
    assert not IdentityClaim.objects.exists()


def test_an_agent_not_answering_the_customer_may_not_add_addresses(world):
    alice, bob = world.agent("alice"), world.agent("bob")
    messenger = _held(alice, world.messenger, "PSID-1")
    with pytest.raises(Forbidden):
        services.add_customer_identity(
            customer=messenger.customer, kind="email", value="x@example.com", actor=bob.user
        )
    assert messenger.customer.identities.count() == 1


# --- Suggested matches, merged with one click and undone exactly -------------------------------


def test_a_suggested_match_merges_with_one_click_and_unmerges_exactly(world, known_and_anonymous):
    known, messenger, alice, case = known_and_anonymous
    # given the phone added by alice without a conversation to type a code in: a suggestion
    outcome = services.add_customer_identity(
        customer=messenger.customer, kind="phone", value="+14155550100", actor=alice.user
    )
    assert outcome.status == "suggested"
    before = {
        "identities": sorted(CustomerIdentity.objects.values_list("pk", "customer_id")),
        "conversations": sorted(Conversation.objects.values_list("pk", "customer_id")),
        "cases": sorted(Case.objects.values_list("pk", "customer_id")),
    }
    (row,) = linking.suggested_matches(messenger.customer, alice.user)
    assert row == {
        "customer_id": known.pk,
        "claim_id": outcome.claim.pk,
        "kind": "phone",
        "kind_label": "Phone number",
        "value": "+14155550100",
        "can_merge": False,  # alice does not answer the known customer
    }
    with pytest.raises(Forbidden):
        linking.merge_suggested(customer=messenger.customer, other_id=known.pk, actor=alice.user)

    # when a supervisor merges it with one click
    supervisor = get_user_model().objects.create_superuser("root", password="x")
    record = linking.merge_suggested(
        customer=messenger.customer, other_id=known.pk, actor=supervisor
    )

    # then the customer who had the number survives, with everything
    assert (record.survivor_id, record.merged_id) == (known.pk, messenger.customer_id)
    assert set(Conversation.objects.values_list("customer_id", flat=True)) == {known.pk}
    assert IdentityClaim.objects.get().status == "merged"
    assert linking.suggested_matches(known, supervisor) == []

    # when it is undone, every row is back where it was
    services.unmerge_customers(customer=known, actor=supervisor)
    assert {
        "identities": sorted(CustomerIdentity.objects.values_list("pk", "customer_id")),
        "conversations": sorted(Conversation.objects.values_list("pk", "customer_id")),
        "cases": sorted(Case.objects.values_list("pk", "customer_id")),
    } == before
    assert case.pk in dict(before["cases"])


def test_customers_sharing_a_match_key_are_suggested(world):
    # given two records of one number, as the normalising migration leaves them
    first = services.identify_or_create_customer(kind="phone", value="+14155550100").customer
    second = Customer.objects.create(created_at=timezone.now())
    CustomerIdentity.objects.create(
        customer=second,
        kind="phone",
        value="4155550100",
        match_key="tel:+14155550100",
        created_at=timezone.now(),
    )
    root = get_user_model().objects.create_superuser("root", password="x")

    (row,) = linking.suggested_matches(second, root)
    assert (row["customer_id"], row["claim_id"], row["can_merge"]) == (first.pk, None, True)
    record = linking.merge_suggested(customer=second, other_id=first.pk, actor=root)
    assert (record.survivor_id, record.merged_id) == (first.pk, second.pk)


# --- A second channel goes to the agent holding the first -----------------------------------


def test_a_second_channel_is_offered_to_the_agent_holding_the_first(world, client):
    alice = world.agent("alice")
    sms = _held(alice, world.sms, "+14155550100", "Hi by SMS")
    bob = world.agent("bob")  # bob has more room than alice: routing alone could pick him
    now = timezone.now()

    services.receive_inbound(account=world.whatsapp, sender="14155550100", text="Hi", now=now)

    whatsapp = Conversation.objects.exclude(pk=sms.pk).get()
    assert whatsapp.customer_id == sms.customer_id
    item = whatsapp.work_item
    assert (item.preferred_agent, item.preferred_until) == (alice, now + timedelta(seconds=120))
    assert item.payload["grouped_with_agent"] == alice.pk
    assert item.payload["linked_conversation_ids"] == [sms.pk]
    routing.route_waiting_work(now=now + timedelta(seconds=1))
    assert AgentWork.objects.get(item=item).agent == alice
    assert not bob.works.exists()
