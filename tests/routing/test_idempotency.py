"""``Idempotency-Key`` on ``POST /api/work-items/``: a retried request never makes a second item."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest
import time_machine
from django.db import connection, connections, transaction
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from omnirouter import roles
from routing import services
from routing.models import IntakeRequest, WorkItem
from tests.api_support import client_for, make_user


@pytest.fixture
def crm(db):
    return make_user("crm", group=roles.INTAKE)


def _body(world, subject="Refund", **extra):
    return {"queue": world.support.pk, "channel": world.chat.pk, "subject": subject, **extra}


def _post(client, body, key):
    return client.post("/api/work-items/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_retry_with_the_same_key_returns_the_first_item(
    world, crm, django_capture_on_commit_callbacks
):
    client = client_for(crm)
    with django_capture_on_commit_callbacks() as first_events:
        first = _post(client, _body(world, payload={"order": "A-1"}), "k-1")
    services.route_waiting_work()  # the item moves on; the replay still answers as the first time

    with django_capture_on_commit_callbacks() as retry_events:
        retry = _post(client, _body(world, payload={"order": "A-1"}), "k-1")

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.json()["status"] == "waiting"
    assert WorkItem.objects.count() == 1
    assert IntakeRequest.objects.get().item_id == first.json()["id"]
    # and the replay wrote and published nothing
    assert len(first_events) > 0
    assert retry_events == []


def test_the_same_key_with_another_body_is_refused(world, crm):
    client = client_for(crm)
    first = _post(client, _body(world, subject="Refund"), "k-2")

    other = _post(client, _body(world, subject="Exchange"), "k-2")

    assert other.status_code == 422
    assert other.json() == {
        "detail": (
            f"This Idempotency-Key was already used with a different request body (it created "
            f"item {first.json()['id']}). Use a new key for a new item, or resend the same body."
        ),
        "code": "idempotency_key_reused",
    }
    assert list(WorkItem.objects.values_list("subject", flat=True)) == ["Refund"]


def test_keys_belong_to_their_client(world, crm):
    other_client = make_user("shop", group=roles.INTAKE)

    mine = _post(client_for(crm), _body(world), "shared-key")
    theirs = _post(client_for(other_client), _body(world), "shared-key")

    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert mine.json()["id"] != theirs.json()["id"]
    assert WorkItem.objects.count() == 2


def test_a_key_is_forgotten_after_the_retention_period(world, crm, settings):
    settings.ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    client = client_for(crm)
    first = _post(client, _body(world), "k-3")

    with time_machine.travel(timezone.now() + timedelta(hours=24, seconds=1)):
        later = _post(client, _body(world), "k-3")

    assert later.status_code == 201
    assert later.json()["id"] != first.json()["id"]
    assert WorkItem.objects.count() == 2
    assert IntakeRequest.objects.get().item_id == later.json()["id"]


def test_old_keys_are_purged(world, crm, settings):
    settings.ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS = 24
    client = client_for(crm)
    _post(client, _body(world, subject="old"), "old")
    now = timezone.now() + timedelta(hours=12)
    with time_machine.travel(now):
        _post(client, _body(world, subject="new"), "new")

    purged = services.purge_intake_requests(now=now + timedelta(hours=12, seconds=1))

    assert purged == 1
    assert list(IntakeRequest.objects.values_list("key", flat=True)) == ["new"]
    assert WorkItem.objects.count() == 2  # the items stay


@pytest.mark.parametrize("key", ["", "x" * 256, "clé"])
def test_a_malformed_key_is_refused(world, crm, key):
    response = _post(client_for(crm), _body(world), key)

    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key"
    assert WorkItem.objects.count() == 0


def test_without_a_key_each_post_makes_an_item(world, crm):
    client = client_for(crm)

    client.post("/api/work-items/", _body(world), format="json")
    client.post("/api/work-items/", _body(world), format="json")

    assert WorkItem.objects.count() == 2
    assert IntakeRequest.objects.count() == 0


def test_the_header_is_in_the_schema(db):
    admin = make_user("root", superuser=True)

    schema = json.loads(client_for(admin).get("/api/schema/?format=json").content)

    parameters = schema["paths"]["/api/work-items/"]["post"]["parameters"]
    header = next(p for p in parameters if p["name"] == "Idempotency-Key")
    assert (header["in"], header.get("required", False), header["schema"]) == (
        "header",
        False,
        {"type": "string"},
    )
    assert "same status and body" in header["description"]


# --- Under real concurrency (PostgreSQL, threads) ---------------------------------------------


def _token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def _in_thread(target):
    """Run ``target`` in a thread with its own database connection; returns (thread, result)."""
    result = {}

    def run():
        try:
            result["value"] = target()
        except BaseException as exc:  # surfaced by the test
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


@pytest.mark.django_db(transaction=True)
def test_two_requests_racing_with_one_key_make_one_item(world, crm):
    client = _token_client(crm)
    body = _body(world)
    barrier = threading.Barrier(2)

    def post():
        barrier.wait()
        return _post(client, body, "race")

    threads = [_in_thread(post) for _ in range(2)]
    for thread, _ in threads:
        thread.join(30)

    responses = [result["value"] for _, result in threads]
    assert [r.status_code for r in responses] == [201, 201]
    assert responses[0].json() == responses[1].json()
    assert WorkItem.objects.count() == 1
    assert IntakeRequest.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_waiting_on_an_uncommitted_key_answers_with_its_item(world, crm):
    # Given a first request whose transaction has created the item and key but not committed
    body = _body(world)
    created, release = threading.Event(), threading.Event()

    def first():
        with transaction.atomic():
            answer = services.enqueue_work_once(
                client=crm,
                key="held",
                request_data=body,
                respond=lambda item: (201, {"id": item.pk}),
                queue=world.support,
                channel=world.chat,
                subject="Refund",
            )
            created.set()
            release.wait(30)
        return answer

    first_thread, first_result = _in_thread(first)
    assert created.wait(30)

    # When the retry arrives, it waits on the key's unique index
    second_thread, second_result = _in_thread(lambda: _post(_token_client(crm), body, "held"))
    _wait_for_a_lock_wait()
    # and the first request commits
    release.set()
    first_thread.join(30)
    second_thread.join(30)

    # Then the retry answers with the first request's item, and there is one item
    assert "error" not in first_result
    assert "error" not in second_result
    item_id = first_result["value"].body["id"]
    assert second_result["value"].status_code == 201
    assert second_result["value"].json() == {"id": item_id}
    assert list(WorkItem.objects.values_list("id", flat=True)) == [item_id]


def _wait_for_a_lock_wait(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return
            time.sleep(0.02)
    pytest.fail("the second request never waited on the first one's key")
