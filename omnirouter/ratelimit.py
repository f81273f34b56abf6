"""Rate limits: one module for every limit the product sets, and their 429 answers.

- API: DRF throttles by role (``RoleRateThrottle``) and one for creating work items
  (``WorkItemCreateThrottle``), counted in Django's cache (Redis in production).
- Webhooks and the self-service help form: ``hit()``, a sliding-window counter in the cache.
  Django's cache has no compare-and-set, so a token bucket kept there would let parallel requests
  all read the same bucket and all pass; ``cache.incr`` is atomic on Redis and in local memory,
  and a window counter built on it holds under concurrent requests.
- The anonymous web-chat socket: a ``TokenBucket`` in the consumer, per connection (frames of one
  connection arrive in order on one consumer, so no sharing is needed).
- Login lockout: django-axes, answered by ``login_locked_out``.

Every refusal is a 429 with ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.translation import gettext as _
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from omnirouter import metrics, roles

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest) -> str | None:
    """The client's address: REMOTE_ADDR, or the X-Forwarded-For entry the last
    DJANGO_TRUSTED_PROXY_COUNT proxies vouch for (the entries left of it are the client's word)."""
    count = settings.TRUSTED_PROXY_COUNT
    if count > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= count:
            return forwarded[-count]
    return request.META.get("REMOTE_ADDR") or None


def client_key(request: HttpRequest) -> str:
    """The client's address as a rate-limit key."""
    return client_ip(request) or "unknown"


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def too_many_requests(
    retry_after: float, body: str = "Too many requests.", content_type: str = "text/plain"
) -> HttpResponse:
    response = HttpResponse(body, status=429, content_type=content_type)
    response["Retry-After"] = retry_after_header(retry_after)
    return response


# --- Sliding-window counter in the cache --------------------------------------------------------


def _wait_seconds(
    *, previous: int, current: int, limit: int, elapsed: float, window_seconds: float
) -> float:
    """How long until one more request fits, if none arrives meanwhile. The estimate of requests
    in the last window is ``previous * (1 - elapsed/window) + current``."""
    fraction = elapsed / window_seconds
    if current + 1 > limit:
        # wait for this window to end, then for its weight to fall enough
        after = max(0.0, 1 - (limit - 1) / current) if current else 0.0
        return (1 - fraction + after) * window_seconds
    if previous == 0:
        return 0.0
    needed = max(0.0, 1 - (limit - 1 - current) / previous)
    return max(0.0, needed - fraction) * window_seconds


# A limit is protection, not a guarantee: with the cache unreachable (Redis down) it lets the
# request through, logged and counted, rather than fail a request that would have succeeded (a
# webhook the provider would retry, an intake POST, an agent's close).
_CACHE_DOWN = (redis.RedisError, OSError)


def _cache_unreachable(where: str) -> None:
    logger.warning("rate limit: cache unreachable in %s; request let through", where, exc_info=True)
    metrics.LIMIT_CHECKS_SKIPPED.inc()


def hit(key: str, *, limit: int, window_seconds: float, now: float | None = None) -> float:
    """Count one request under ``key``; 0 if it is within ``limit`` per ``window_seconds``,
    otherwise the seconds to wait (the refused request is not counted). 0 when the cache is
    unreachable."""
    try:
        return _hit(key, limit=limit, window_seconds=window_seconds, now=now)
    except _CACHE_DOWN:
        _cache_unreachable(key.split(":", 1)[0])
        return 0.0


def _hit(key: str, *, limit: int, window_seconds: float, now: float | None) -> float:
    now = time.time() if now is None else now
    window = int(now // window_seconds)
    elapsed = now - window * window_seconds
    current_key, previous_key = f"rl:{key}:{window}", f"rl:{key}:{window - 1}"
    timeout = math.ceil(window_seconds * 2) + 1
    cache.add(current_key, 0, timeout=timeout)
    try:
        current = cache.incr(current_key)
    except ValueError:  # expired between add and incr
        cache.add(current_key, 1, timeout=timeout)
        current = 1
    previous = cache.get(previous_key) or 0
    if previous * (1 - elapsed / window_seconds) + current <= limit:
        return 0.0
    cache.decr(current_key)
    return max(
        1.0,
        _wait_seconds(
            previous=previous,
            current=current - 1,
            limit=limit,
            elapsed=elapsed,
            window_seconds=window_seconds,
        ),
    )


# --- Token bucket (in memory) -----------------------------------------------------------------


@dataclass
class TokenBucket:
    """``capacity`` tokens, refilled at ``rate_per_second``; one token per frame."""

    capacity: float
    rate_per_second: float
    tokens: float = -1.0
    updated: float = 0.0

    def take(self, now: float | None = None) -> float:
        """0 if a token was taken, otherwise the seconds until one is there."""
        now = time.monotonic() if now is None else now
        if self.tokens < 0:
            self.tokens, self.updated = self.capacity, now
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_second)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        if self.rate_per_second <= 0:
            return math.inf
        return (1 - self.tokens) / self.rate_per_second


# --- API throttles (DRF) ----------------------------------------------------------------------


def _role_rates_per_minute(user: Any) -> tuple[str, int]:
    """The user's throttle scope and rate: the most generous of their roles."""
    if not getattr(user, "is_authenticated", False):
        return "anonymous", settings.API_THROTTLE_ANONYMOUS_PER_MINUTE
    candidates = [("agent", settings.API_THROTTLE_AGENT_PER_MINUTE)]
    if roles.is_admin(user):
        candidates.append(("admin", settings.API_THROTTLE_ADMIN_PER_MINUTE))
    if roles.is_supervisor(user):
        candidates.append(("supervisor", settings.API_THROTTLE_SUPERVISOR_PER_MINUTE))
    if roles.is_intake(user):
        candidates.append(("intake", settings.API_THROTTLE_INTAKE_PER_MINUTE))
    return max(candidates, key=lambda pair: pair[1])


class _PerMinuteThrottle(SimpleRateThrottle):
    """Rates come from settings at request time (tests and operators can change them)."""

    def __init__(self) -> None:  # SimpleRateThrottle reads a class-level rate table here
        pass

    def _set_rate(self, per_minute: int) -> None:
        self.rate = f"{per_minute}/min"
        self.num_requests, self.duration = per_minute, 60

    def counted(self, request: Request, view: Any) -> bool:
        """``SimpleRateThrottle.allow_request``, letting the request through when the cache is
        unreachable."""
        try:
            return super().allow_request(request, view)
        except _CACHE_DOWN:
            _cache_unreachable(self.scope or "api")
            return True

    def get_ident_key(self, request: Request) -> str:
        if request.user and request.user.is_authenticated:
            return f"user-{request.user.pk}"
        return f"ip-{client_key(request)}"


class RoleRateThrottle(_PerMinuteThrottle):
    """Every API request, per user (anonymous: per address), at their role's rate."""

    def allow_request(self, request: Request, view: Any) -> bool:
        self.scope, per_minute = _role_rates_per_minute(request.user)
        self._set_rate(per_minute)
        return self.counted(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident_key(request)}


class WorkItemCreateThrottle(_PerMinuteThrottle):
    """POST /api/work-items/ per intake client."""

    scope = "work-item-create"

    def allow_request(self, request: Request, view: Any) -> bool:
        if request.method != "POST":
            return True
        self._set_rate(settings.API_THROTTLE_WORK_ITEM_CREATE_PER_MINUTE)
        return self.counted(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident_key(request)}


# --- Login lockout (django-axes) --------------------------------------------------------------


def login_locked_out(
    request: HttpRequest, original_response: Any = None, credentials: Any = None
) -> HttpResponse:
    """The page for a locked-out login: 429, and when to try again (JSON for the API's token
    endpoint)."""
    seconds = settings.LOGIN_LOCKOUT_MINUTES * 60
    if request.path.startswith("/api/"):
        return locked_out_json(request)
    response = render(
        request,
        "registration/locked_out.html",
        {"minutes": settings.LOGIN_LOCKOUT_MINUTES},
        status=429,
    )
    response["Retry-After"] = retry_after_header(seconds)
    return response


def locked_out_json(request: HttpRequest) -> HttpResponse:
    """The API's answer to a locked-out login (``POST /api/auth/token/``)."""
    minutes = settings.LOGIN_LOCKOUT_MINUTES
    response = JsonResponse(
        {
            "detail": _("Too many failed logins. Try again in %(minutes)d minutes.")
            % {"minutes": minutes},
            "code": "locked_out",
        },
        status=429,
    )
    response["Retry-After"] = retry_after_header(minutes * 60)
    return response
