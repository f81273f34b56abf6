"""``/metrics``: who may read it, and the series a scraper sees."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY

from omnirouter import nudges, roles
from omnirouter.asgi import application
from routing import services
from tests.api_support import client_for, make_user
from tests.factories import QueueFactory, enqueue, make_agent
from tests.harness import free_port

TOKEN = "metrics-token-123"


@pytest.fixture(autouse=True)
def _token(settings):
    settings.METRICS_BEARER_TOKEN = TOKEN


def _scrape(client=None, token=TOKEN):
    client = client or Client()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/metrics", **headers)


def _value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_only_admins_and_the_bearer_token_may_read_metrics(db):
    admin = make_user("root", superuser=True)
    supervisor = make_user("sue", group=roles.SUPERVISOR)

    assert _scrape(token="").status_code == 403
    assert _scrape(token="wrong").status_code == 403
    assert _scrape(client_for(supervisor), token="").status_code == 403
    assert _scrape(client_for(admin), token="").status_code == 200
    assert _scrape().status_code == 200


def test_no_token_set_means_admins_only(db, settings):
    settings.METRICS_BEARER_TOKEN = ""

    assert _scrape(token="").status_code == 403
    assert _scrape(token="anything").status_code == 403


def test_backlog_per_queue_is_read_at_scrape_time_in_two_queries(
    world, api_config, django_assert_num_queries
):
    QueueFactory(name="Empty")
    for n in range(3):
        enqueue(world.support, world.chat, f"s{n}")
    enqueue(world.vip, world.chat, "v")
    alice = make_agent("alice", queues=[world.vip], config=api_config, status=world.available)
    services.route_waiting_work()  # the VIP item is offered: no longer waiting
    assert alice.works.count() == 1

    with django_assert_num_queries(2):
        response = _scrape()

    text = response.content.decode()
    assert response["Content-Type"].startswith("text/plain; version=")
    waiting = dict(
        re.findall(r'^omnirouter_queue_waiting_items\{queue="([^"]+)"\} (\S+)$', text, re.M)
    )
    assert waiting == {"Support": "3.0", "VIP": "0.0", "Empty": "0.0"}
    for series in (
        "omnirouter_routing_pass_seconds_bucket",
        "omnirouter_offers_total",
        "omnirouter_sweep_lag_seconds_count",
        "omnirouter_offer_overdue_seconds",
        "# TYPE omnirouter_nudge_failures_total counter",
        "# TYPE omnirouter_websocket_connections gauge",
    ):
        assert series in text


def test_passes_offers_and_sweep_lag_are_counted(world, api_config):
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "a")
    enqueue(world.support, world.chat, "b")
    passes = _value("omnirouter_routing_pass_seconds_count")
    offers = _value("omnirouter_offers_total")
    lag_count = _value("omnirouter_sweep_lag_seconds_count")
    lag_sum = _value("omnirouter_sweep_lag_seconds_sum")

    services.route_waiting_work()
    deadline = max(w.expires_at for w in alice.works.all())
    overdue = _scrape().content.decode()
    services.expire_offers(now=deadline + timedelta(seconds=3))

    assert _value("omnirouter_routing_pass_seconds_count") == passes + 1
    assert _value("omnirouter_offers_total") == offers + 2
    assert _value("omnirouter_sweep_lag_seconds_count") == lag_count + 2
    # both offers share one deadline (one batch, one push timeout): 3 s late each
    assert _value("omnirouter_sweep_lag_seconds_sum") == pytest.approx(lag_sum + 6.0)
    assert "omnirouter_offer_overdue_seconds 0.0" in overdue


def test_an_overdue_offer_shows_before_the_sweep_expires_it(world, api_config):
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    enqueue(world.support, world.chat, "a")
    services.route_waiting_work(now=timezone.now() - timedelta(minutes=10))
    assert alice.works.get().expires_at < timezone.now()

    text = _scrape().content.decode()

    overdue = float(re.search(r"^omnirouter_offer_overdue_seconds (\S+)$", text, re.M).group(1))
    assert overdue > 0


def test_a_failed_nudge_after_commit_is_counted_not_raised(db, django_capture_on_commit_callbacks):
    before = _value("omnirouter_nudge_failures_total", hook="outbound_send")

    def broker_down():
        raise ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        nudges.on_commit(nudges.OUTBOUND_SEND, broker_down)

    assert len(callbacks) == 1
    assert _value("omnirouter_nudge_failures_total", hook="outbound_send") == before + 1


@pytest.mark.django_db(transaction=True)
def test_open_consoles_are_counted_per_consumer(world, api_config, settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    alice = make_agent("alice", queues=[world.support], config=api_config, status=world.available)
    before = _value("omnirouter_websocket_connections", consumer="AgentConsumer")
    anonymous, ws = _console(None), _console(alice.user)

    async def conversation():
        await anonymous.connect(timeout=5)
        await anonymous.receive_output(timeout=5)  # closed: not counted
        await anonymous.disconnect()
        connected, _ = await ws.connect(timeout=5)
        await ws.receive_json_from(timeout=5)
        during = _value("omnirouter_websocket_connections", consumer="AgentConsumer")
        await ws.disconnect()
        return connected, during

    connected, during = async_to_sync(conversation)()

    assert connected
    assert during == before + 1
    assert _value("omnirouter_websocket_connections", consumer="AgentConsumer") == before


def _console(user):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    if user is not None:
        client = Client()
        client.force_login(user)
        cookie = client.cookies[django_settings.SESSION_COOKIE_NAME].value
        headers.append((b"cookie", f"{django_settings.SESSION_COOKIE_NAME}={cookie}".encode()))
    return WebsocketCommunicator(application, "/ws/agent/", headers=headers)


def test_a_push_to_a_dead_channel_layer_is_counted_not_raised(
    db, settings, django_capture_on_commit_callbacks
):
    from omnirouter import fanout, realtime

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [f"redis://127.0.0.1:{free_port()}/1"]},
        }
    }
    before = _value("omnirouter_nudge_failures_total", hook="realtime")

    with django_capture_on_commit_callbacks(execute=True):
        realtime.publish(realtime.agent_group(1), realtime.OFFER, {"id": 1})
    assert fanout.flush(10)

    assert _value("omnirouter_nudge_failures_total", hook="realtime") == before + 1
