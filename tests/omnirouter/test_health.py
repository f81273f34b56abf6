"""Liveness (``/healthz``) and readiness (``/readyz``) in the test process, on real servers.

The outage under a running daphne is in tests/routing/test_broker_outage.py; the embedded run's
readiness in tests/test_embedded_demo.py.
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.harness import free_port


def _ready(client: Client | None = None):
    response = (client or Client()).get("/readyz", HTTP_ACCEPT="text/plain")
    return response.status_code, response.content.decode().splitlines()


def test_liveness_answers_without_touching_anything(db, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = Client().get("/healthz")

    assert (response.status_code, response.content) == (200, b"ok")


def test_ready_when_postgresql_and_both_redis_databases_answer(db, settings):
    settings.ROUTING_MODE = "manual"  # no worker expected

    status, lines = _ready()

    assert status == 200
    assert lines == [
        "Database(alias='default'): OK",
        "Redis(Celery broker, db 0): OK",
        "Redis(channel layer, db 1): OK",
    ]


def test_not_ready_names_the_redis_that_is_down(db, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    # Generous for the Redis that is up, on a loaded machine; the closed port fails at once.
    settings.READINESS_TIMEOUT_SECONDS = 5

    status, lines = _ready()

    assert status == 503
    broker = [line for line in lines if line.startswith("Redis(Celery broker, db 0)")]
    assert len(broker) == 1
    assert broker[0].startswith("Redis(Celery broker, db 0): Unavailable: Unable to connect")
    assert "Redis(channel layer, db 1): OK" in lines


@pytest.mark.worker
def test_celery_mode_is_ready_when_a_worker_answers(celery_worker_process, settings):
    settings.ROUTING_MODE = "celery"

    status, lines = _ready()

    assert status == 200
    assert "Celery worker: OK" in lines


def test_json_answer_for_monitors(db, settings):
    settings.ROUTING_MODE = "manual"

    response = Client().get("/readyz", HTTP_ACCEPT="application/json")

    assert response.status_code == 200
    assert response.json() == {
        "Database(alias='default')": "OK",
        "Redis(Celery broker, db 0)": "OK",
        "Redis(channel layer, db 1)": "OK",
    }
