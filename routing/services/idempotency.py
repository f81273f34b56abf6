"""Intake with an ``Idempotency-Key``: a retried request gets the first answer, never a second item.

An intake client that lost the answer to ``POST /api/work-items/`` (a timeout, a dropped
connection) sends the same request again with the same key. The key is stored with the item it
created, in the same transaction, under a unique constraint on (client, key): of two requests
racing with one key, the second insert waits for the first transaction and then fails, and the
second request answers with the first one's item. Keys are forgotten after
``ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from omnirouter.errors import DomainError
from routing.models import IntakeRequest, WorkItem
from routing.services.intake import enqueue_work

# Visible ASCII, as the IETF Idempotency-Key draft's examples; long enough for a UUID or a hash.
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")


class IdempotencyKeyReused(DomainError):
    """The key was used before with a different request body."""

    http_status = 422


@dataclass(frozen=True)
class IntakeAnswer:
    status: int
    body: dict[str, Any]
    replayed: bool


def fingerprint(data: Mapping[str, Any]) -> str:
    """SHA-256 of the request body as canonical JSON (key order and spacing do not matter)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def enqueue_work_once(
    *,
    client: User,
    key: str,
    request_data: Mapping[str, Any],
    respond: Callable[[WorkItem], tuple[int, dict[str, Any]]],
    now: datetime | None = None,
    **fields: Any,
) -> IntakeAnswer:
    """``enqueue_work(**fields)`` once per (client, key); ``respond`` renders the answer to keep.

    A known key with the same body answers as the first time (``replayed``); with another body it
    raises ``IdempotencyKeyReused`` (422) and writes nothing. Side effects as ``enqueue_work``,
    only for the request that creates the item.
    """
    now = now or timezone.now()
    if not _KEY.match(key):
        raise DomainError(
            _("Idempotency-Key must be 1 to 255 visible ASCII characters (a UUID is a good key)."),
            "idempotency_key",
        )
    digest = fingerprint(request_data)
    retention = timedelta(hours=settings.ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS)
    with transaction.atomic():
        IntakeRequest.objects.filter(
            client=client, key=key, created_at__lte=now - retention
        ).delete()
        known = IntakeRequest.objects.filter(client=client, key=key).first()
        if known is not None:
            return _replay(known, digest)
        try:
            # A savepoint: when a concurrent request with this key wins, its item stands and
            # ours (with its after-commit events) is undone.
            with transaction.atomic():
                item = enqueue_work(**fields, created_by=client, now=now)
                status, body = respond(item)
                IntakeRequest.objects.create(
                    client=client,
                    key=key,
                    fingerprint=digest,
                    item=item,
                    response_status=status,
                    response_body=body,
                    created_at=now,
                )
        except IntegrityError:
            known = IntakeRequest.objects.filter(client=client, key=key).first()
            if known is None:
                raise
            return _replay(known, digest)
    return IntakeAnswer(status=status, body=body, replayed=False)


def _replay(known: IntakeRequest, digest: str) -> IntakeAnswer:
    if known.fingerprint != digest:
        raise IdempotencyKeyReused(
            _(
                "This Idempotency-Key was already used with a different request body (it created "
                "item %(id)s). Use a new key for a new item, or resend the same body."
            )
            % {"id": known.item_id},
            "idempotency_key_reused",
        )
    return IntakeAnswer(status=known.response_status, body=known.response_body, replayed=True)


def purge_intake_requests(*, now: datetime | None = None) -> int:
    """Forget idempotency keys older than the retention period; returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS)
    deleted, _by_model = IntakeRequest.objects.filter(created_at__lte=cutoff).delete()
    return deleted
