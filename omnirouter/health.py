"""Liveness and readiness.

- ``/healthz`` (liveness): the process answers HTTP. Nothing else: restarting a web process
  because PostgreSQL is down would not bring PostgreSQL back.
- ``/readyz`` (readiness, django-health-check): what this run needs to serve and route:
  PostgreSQL (or the embedded SQLite file); with Redis, the Celery broker database and the
  channel-layer database; in Celery mode, a Celery worker that answers a control ping. Answers
  200, or 503 naming what is down. The embedded run (SQLite, in-memory layer, in-process
  routing) checks only its database: that is all it has.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from health_check.base import HealthCheck
from health_check.checks import Database
from health_check.contrib.celery import Ping
from health_check.contrib.redis import Redis
from health_check.exceptions import HealthCheckException, ServiceUnavailable
from health_check.views import HealthCheckView
from redis.asyncio import Redis as AsyncRedis

from omnirouter.celery import app as celery_app


def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness: the process answers."""
    return HttpResponse("ok", content_type="text/plain")


@dataclasses.dataclass
class NamedRedis(Redis):
    """A Redis ping that says which of our Redis databases it is (broker, channel layer)."""

    name: str = ""
    timeout = datetime.timedelta(seconds=2)

    def __repr__(self) -> str:
        db = self._connection_kwargs().get("db", 0)
        return f"Redis({self.name}, db {db})"


def _redis(name: str, url: str, timeout_seconds: float) -> NamedRedis:
    def client() -> AsyncRedis:
        return AsyncRedis.from_url(
            url, socket_connect_timeout=timeout_seconds, socket_timeout=timeout_seconds
        )

    return NamedRedis(client_factory=client, name=name)


@dataclasses.dataclass
class WorkerPing(Ping):
    """A Celery worker answers a control ping (any worker: they all take both queues)."""

    def __repr__(self) -> str:
        return "Celery worker"

    def run(self) -> None:
        try:
            super().run()
        except HealthCheckException:
            raise
        except Exception as exc:  # kombu's OperationalError: the broker is unreachable
            raise ServiceUnavailable("no answer: the broker is unreachable") from exc

    def check_active_queues(self, *active_workers: str) -> None:
        # The library's check asks every worker for its queues: a second broadcast per probe.
        # Compose runs every worker on both queues; a ping answer is enough.
        return None


class ReadinessView(HealthCheckView):
    """``/readyz``: 200 when every check passes, 503 (not the library's 500) otherwise, so
    load balancers and monitors can tell "not ready" from "broken"."""

    def get_checks(self) -> Iterator[HealthCheck]:
        timeout = settings.READINESS_TIMEOUT_SECONDS
        yield Database()
        broker = settings.CELERY_BROKER_URL
        if broker.startswith(("redis://", "rediss://", "unix://")):
            yield _redis("Celery broker", broker, timeout)
        layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
        if layer["BACKEND"] == "channels_redis.core.RedisChannelLayer":
            for host in layer["CONFIG"]["hosts"]:
                if isinstance(host, str):
                    yield _redis("channel layer", host, timeout)
        if settings.ROUTING_MODE == "celery":
            yield WorkerPing(app=celery_app, timeout=datetime.timedelta(seconds=timeout), limit=1)

    async def get(self, request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response
