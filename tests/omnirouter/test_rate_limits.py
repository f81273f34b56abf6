"""Login lockout, API throttles by role, and the counters behind the other limits."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from omnirouter import roles
from omnirouter.ratelimit import TokenBucket, hit
from routing.models import WorkItem
from tests.api_support import PASSWORD, client_for, make_user
from tests.factories import QueueFactory, ServiceChannelFactory, make_agent

# --- Login lockout ------------------------------------------------------------------------------


@pytest.fixture
def lockout(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.LOGIN_LOCKOUT_MINUTES = 15
    settings.AXES_COOLOFF_TIME = timedelta(minutes=15)


@pytest.mark.parametrize(
    ("url", "staff"),
    [("/accounts/login/", False), ("/admin/login/", True)],
    ids=["site", "admin"],
)
def test_wrong_passwords_lock_the_login_until_the_cool_off(db, lockout, url, staff):
    # given a user, and someone guessing their password
    user = get_user_model().objects.create_user("ana", password=PASSWORD, is_staff=staff)
    client = Client()
    guesses = [client.post(url, {"username": "ana", "password": f"guess-{n}"}) for n in range(3)]

    # when the right password comes next
    right = client.post(url, {"username": "ana", "password": PASSWORD})

    # then it is refused too, with when to come back
    assert [g.status_code for g in guesses] == [200, 200, 429]
    assert right.status_code == 429
    assert right["Retry-After"] == str(15 * 60)
    assert "Too many failed logins" in right.content.decode()
    assert "_auth_user_id" not in client.session

    # and after the cool-off the right password works
    with time_machine.travel(timezone.now() + timedelta(minutes=16), tick=False):
        later = client.post(url, {"username": "ana", "password": PASSWORD})
    assert later.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_a_lockout_is_per_user_and_address(db, lockout):
    get_user_model().objects.create_user("ana", password=PASSWORD)
    get_user_model().objects.create_user("ben", password=PASSWORD)
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for n in range(3):
        attacker.post("/accounts/login/", {"username": "ana", "password": f"guess-{n}"})

    # ana from her own address, and ben from the attacker's, can still log in
    ana = Client(REMOTE_ADDR="198.51.100.7").post(
        "/accounts/login/", {"username": "ana", "password": PASSWORD}
    )
    ben = attacker.post("/accounts/login/", {"username": "ben", "password": PASSWORD})
    assert (ana.status_code, ben.status_code) == (302, 302)


def test_fewer_failures_than_the_limit_do_not_lock(db, lockout):
    get_user_model().objects.create_user("ana", password=PASSWORD)
    client = Client()
    for n in range(2):
        client.post("/accounts/login/", {"username": "ana", "password": f"guess-{n}"})
    assert (
        client.post("/accounts/login/", {"username": "ana", "password": PASSWORD}).status_code
        == 302
    )


# --- API throttles ------------------------------------------------------------------------------


def test_anonymous_api_requests_are_throttled(db, settings):
    settings.API_THROTTLE_ANONYMOUS_PER_MINUTE = 2
    client = Client()

    codes = [client.get("/api/schema/").status_code for _ in range(3)]

    assert codes == [200, 200, 429]
    refused = client.get("/api/schema/")
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60


def test_each_role_has_its_own_rate(db, settings):
    settings.API_THROTTLE_AGENT_PER_MINUTE = 2
    settings.API_THROTTLE_SUPERVISOR_PER_MINUTE = 3
    agent = client_for(make_agent("alice").user)
    supervisor = client_for(make_user("sue", group=roles.SUPERVISOR))

    agent_codes = [agent.get("/api/me/work/").status_code for _ in range(3)]
    supervisor_codes = [supervisor.get("/api/supervisor/snapshot/").status_code for _ in range(4)]

    assert agent_codes == [200, 200, 429]
    assert supervisor_codes == [200, 200, 200, 429]


def test_work_item_intake_has_its_own_limit(db, settings):
    # given an intake client allowed 2 new items a minute
    settings.API_THROTTLE_WORK_ITEM_CREATE_PER_MINUTE = 2
    queue, channel = QueueFactory(name="Support"), ServiceChannelFactory(key="case")
    intake = client_for(make_user("crm", group=roles.INTAKE))
    body = {"queue": queue.pk, "channel": channel.pk, "subject": "Refund"}

    codes = [intake.post("/api/work-items/", body, format="json").status_code for _ in range(3)]

    assert codes == [201, 201, 429]
    assert WorkItem.objects.count() == 2
    # reading is not creating: still allowed
    assert intake.get("/api/work-items/").status_code == 200


# --- The counters -------------------------------------------------------------------------------


def test_window_counter_allows_the_limit_then_says_how_long_to_wait(db):
    now = 1_200_000.0  # a window boundary for a 60 s window
    assert [hit("t1", limit=3, window_seconds=60, now=now + n) for n in range(3)] == [0, 0, 0]

    wait = hit("t1", limit=3, window_seconds=60, now=now + 10)

    assert wait == pytest.approx(50 + 60 * (1 - 2 / 3))


def test_window_counter_carries_the_last_window_over(db):
    # given 3 of 3 used at the end of one window
    start = 1_200_000.0
    for n in range(3):
        hit("t2", limit=3, window_seconds=60, now=start + 57 + n)

    # then the start of the next window is still full (no double burst at the boundary)
    assert hit("t2", limit=3, window_seconds=60, now=start + 61) > 0
    # and the weight of the last window fades: a third of the way into this one there is room
    assert hit("t2", limit=3, window_seconds=60, now=start + 60 + 25) == 0


def test_refused_requests_are_not_counted(db):
    now = 2_400_000.0
    assert [hit("t3", limit=2, window_seconds=60, now=now + n) for n in range(2)] == [0, 0]
    for _ in range(10):
        assert hit("t3", limit=2, window_seconds=60, now=now + 2) > 0
    # half way into the next window the last one weighs 2 * 0.5: one more fits (it would not if
    # the ten refusals had been counted)
    assert hit("t3", limit=2, window_seconds=60, now=now + 90) == 0


def test_token_bucket_bursts_then_refills():
    bucket = TokenBucket(capacity=2, rate_per_second=0.5)
    assert [bucket.take(now=100.0) for _ in range(2)] == [0, 0]
    assert bucket.take(now=100.0) == pytest.approx(2.0)
    assert bucket.take(now=101.0) == pytest.approx(1.0)
    assert bucket.take(now=102.0) == 0
    # it never holds more than its capacity
    later = [bucket.take(now=1000.0) for _ in range(3)]
    assert later[:2] == [0, 0]
    assert later[2] > 0
    assert math.isinf(TokenBucket(capacity=0, rate_per_second=0).take(now=1.0))
