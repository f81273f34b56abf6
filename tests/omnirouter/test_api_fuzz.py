"""Generated requests against the API as its schema describes it: no answer is a server error, and
every answer conforms to the schema (status codes documented, bodies of the documented shape).

Schemathesis reads ``/api/schema/`` from the real application and sends what it generates through
it, against the real PostgreSQL test database, as an administrator and as an agent (the two
callers with the most and the fewest rights who can reach most operations). Intake and
supervisor calls are covered by the authorization matrix in tests/routing/test_api.py.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from omnirouter import roles
from tests.api_support import make_supervisor, make_user
from tests.factories import (
    PresenceConfigurationFactory,
    QueueFactory,
    ServiceChannelFactory,
    enqueue,
    make_agent,
    make_status,
)

CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


@pytest.fixture
def _keep_test_connection():
    # The application is called in this thread, inside the test's transaction; a finished request
    # would close that connection (Django's own test client disconnects this the same way).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def center(db, settings, _keep_test_connection):
    settings.ROUTING_MODE = "manual"
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    chat = ServiceChannelFactory(key="chat", label="Chat")
    status = make_status("Available", [chat])
    queue = QueueFactory(name="Support")
    config = PresenceConfigurationFactory(name="api", capacity=3, console_required=False)
    agent = make_agent("alice", queues=[queue], config=config, status=status)
    make_supervisor("sam", queue)
    make_user("crm", group=roles.INTAKE)
    for n in range(3):
        enqueue(queue=queue, channel=chat, subject=f"item {n}")
    return {
        "admin": Token.objects.create(user=make_user("root", superuser=True)).key,
        "agent": Token.objects.create(user=agent.user).key,
    }


# Read once at collection from the application itself (the schema view touches no database).
schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())


_SETTINGS = settings(
    max_examples=3,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@_SETTINGS
def test_generated_requests_as_admin_get_no_server_error_and_conform(case, center):
    response = case.call(headers={"Authorization": f"Token {center['admin']}"})

    case.validate_response(response, checks=CHECKS)


@schema.parametrize()
@_SETTINGS
def test_generated_requests_as_agent_get_no_server_error_and_conform(case, center):
    response = case.call(headers={"Authorization": f"Token {center['agent']}"})

    case.validate_response(response, checks=CHECKS)
