"""Provider webhooks: check the signature, parse, hand each event to one service.

CSRF-exempt (providers cannot send our token; the signature is the authentication), fast (no
provider calls here: replies leave through Celery), idempotent (a redelivered message is stored
once: ``receive_inbound`` keys on the provider message id). A bad signature is answered 403 and
nothing is stored. A signed delivery that cannot be used (malformed, an identifier too long to
store) is a poison message: retrying it can never succeed, so it is acknowledged (200), logged
and dropped, and the provider stops retrying it. Parsing happens before any write, and all events
of one delivery are stored in one transaction. More than WEBHOOK_REQUESTS_PER_MINUTE deliveries
for one account from one address are answered 429 with Retry-After (before any database work),
which providers treat as "retry later".
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from messaging import services
from messaging.adapters import InboundMessage, MalformedPayload, StatusUpdate, messenger, sms
from messaging.adapters import whatsapp as whatsapp_adapter
from messaging.adapters.base import valid_hub_signature
from messaging.models import AccountKind, ChannelAccount
from omnirouter import ratelimit

logger = logging.getLogger(__name__)


def _throttled(json_body: bool) -> Callable[[Callable[..., HttpResponse]], Any]:
    """Answer 429 past WEBHOOK_REQUESTS_PER_MINUTE per account and sending address, in the body
    format the provider expects (Twilio: plain text; Meta: JSON)."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, account_id: int) -> HttpResponse:
            wait = ratelimit.hit(
                f"webhook:{account_id}:{ratelimit.client_key(request)}",
                limit=settings.WEBHOOK_REQUESTS_PER_MINUTE,
                window_seconds=60,
            )
            if not wait:
                return view(request, account_id)
            logger.warning("webhook for account %s throttled", account_id)
            if json_body:
                response: HttpResponse = JsonResponse({"detail": "Too many requests."}, status=429)
                response["Retry-After"] = ratelimit.retry_after_header(wait)
                return response
            return ratelimit.too_many_requests(wait)

        return wrapper

    return decorate


def _account(account_id: int, kind: str) -> ChannelAccount:
    return get_object_or_404(
        ChannelAccount.objects.select_related("queue", "service_channel"),
        pk=account_id,
        kind=kind,
        active=True,
    )


def _store(account: ChannelAccount, events: list[InboundMessage | StatusUpdate]) -> None:
    with transaction.atomic():
        for event in events:
            if isinstance(event, InboundMessage):
                services.receive_inbound(
                    account=account,
                    sender=event.sender,
                    text=event.text,
                    provider_message_id=event.provider_message_id,
                    sender_name=event.sender_name,
                )
            else:
                services.update_delivery_status(
                    account=account,
                    provider_message_id=event.provider_message_id,
                    status=event.status,
                    error=event.error,
                )


def _log_poison(account: ChannelAccount, exc: Exception) -> None:
    logger.warning(
        "%s webhook: signed delivery for account %s dropped as malformed: %s",
        account.kind,
        account.pk,
        str(exc)[:300],
    )


def _public_url(request: HttpRequest) -> str:
    """The URL the provider called: what Twilio signed. Behind a proxy, Django may see another
    scheme or host; MESSAGING_PUBLIC_BASE_URL names the public one."""
    base = settings.MESSAGING_PUBLIC_BASE_URL.rstrip("/")
    if base:
        return base + request.get_full_path()
    return request.build_absolute_uri()


@csrf_exempt
@require_http_methods(["POST"])
@_throttled(json_body=False)
def sms_webhook(request: HttpRequest, account_id: int) -> HttpResponse:
    """Inbound SMS and status callbacks in Twilio's form-encoded format; answers empty TwiML."""
    account = _account(account_id, AccountKind.SMS)
    signature = request.META.get(sms.SIGNATURE_HEADER, "")
    if not sms.valid_signature(account, _public_url(request), request.POST, signature):
        logger.warning("sms webhook: bad signature for account %s", account.pk)
        return HttpResponse("Invalid signature.", status=403, content_type="text/plain")
    try:
        events = sms.parse(request.POST, account)
    except MalformedPayload as exc:
        _log_poison(account, exc)
        return HttpResponse(sms.EMPTY_TWIML, content_type="text/xml")
    _store(account, events)
    return HttpResponse(sms.EMPTY_TWIML, content_type="text/xml")


def _verify_handshake(request: HttpRequest, account: ChannelAccount) -> HttpResponse:
    """Meta's subscription check: echo hub.challenge when hub.verify_token is ours."""
    mode = request.GET.get("hub.mode")
    token = request.GET.get("hub.verify_token", "")
    challenge = request.GET.get("hub.challenge", "")
    if (
        mode == "subscribe"
        and account.verify_token
        and hmac.compare_digest(token.encode(), account.verify_token.encode())
    ):
        return HttpResponse(challenge, content_type="text/plain")
    return HttpResponse("Verification failed.", status=403, content_type="text/plain")


def _meta_webhook(request: HttpRequest, account: ChannelAccount, parse: Any) -> HttpResponse:
    if request.method == "GET":
        return _verify_handshake(request, account)
    body = request.body
    if not valid_hub_signature(
        account.app_secret, body, request.headers.get("X-Hub-Signature-256")
    ):
        logger.warning("%s webhook: bad signature for account %s", account.kind, account.pk)
        return JsonResponse({"detail": "Invalid signature."}, status=403)
    try:
        events = parse(json.loads(body), account)
    except (ValueError, RecursionError, MalformedPayload) as exc:
        # JSONDecodeError and MalformedPayload are ValueErrors; RecursionError is a body nested
        # deeper than Python's parser goes.
        _log_poison(account, exc)
        return JsonResponse({"received": 0, "dropped": f"Malformed payload: {exc}"})
    _store(account, events)
    return JsonResponse({"received": len(events)})


@csrf_exempt
@require_http_methods(["GET", "POST"])
@_throttled(json_body=True)
def whatsapp_webhook(request: HttpRequest, account_id: int) -> HttpResponse:
    """WhatsApp Cloud API: verification handshake and signed notifications."""
    return _meta_webhook(
        request, _account(account_id, AccountKind.WHATSAPP), whatsapp_adapter.parse
    )


@csrf_exempt
@require_http_methods(["GET", "POST"])
@_throttled(json_body=True)
def messenger_webhook(request: HttpRequest, account_id: int) -> HttpResponse:
    """Messenger Platform: verification handshake and signed page events."""
    return _meta_webhook(request, _account(account_id, AccountKind.MESSENGER), messenger.parse)
