"""Messaging data: customers and their identities, channel accounts, conversations, messages, cases.

Every write goes through ``messaging.services``; these models hold data and the invariants
PostgreSQL must enforce (one identity per (kind, value), one open conversation per address and
account, a provider message id stored once per account).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _


class Customer(models.Model):
    """A person who writes to us, on any channel. A merged customer points to the survivor."""

    display_name = models.CharField(_("name"), max_length=200, blank=True, default="")
    created_at = models.DateTimeField(_("created"))
    merged_into = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="merged_from",
        verbose_name=_("merged into"),
    )
    merged_at = models.DateTimeField(_("merged"), null=True, blank=True)
    merged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        constraints = [
            models.CheckConstraint(
                condition=~Q(merged_into=models.F("id")), name="customer_not_merged_into_self"
            )
        ]

    def __str__(self) -> str:
        return self.display_name or _("Customer #%(id)s") % {"id": self.pk}


class IdentityKind(models.TextChoices):
    PHONE = "phone", _("Phone number")
    WHATSAPP = "whatsapp", _("WhatsApp id")
    MESSENGER = "messenger", _("Messenger id")
    EMAIL = "email", _("E-mail")
    WEBCHAT = "webchat", _("Web chat visitor")


class CustomerIdentity(models.Model):
    """How we recognise a customer on one channel: a phone number, a WhatsApp id, a PSID..."""

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="identities", verbose_name=_("customer")
    )
    kind = models.CharField(_("kind"), max_length=12, choices=IdentityKind.choices)
    value = models.CharField(_("value"), max_length=200)
    # What the address means across channels ("tel:+14155550100" for a valid phone number on
    # SMS or WhatsApp, "mailto:ana@example.com"); null when it means nothing beyond its channel
    # (a Messenger id, a web-chat visitor, a number that is not valid). See messaging.identity.
    match_key = models.CharField(_("match key"), max_length=210, null=True, blank=True)
    created_at = models.DateTimeField(_("created"))

    class Meta:
        ordering = ["kind", "value"]
        verbose_name = _("customer identity")
        verbose_name_plural = _("customer identities")
        constraints = [
            models.UniqueConstraint(fields=["kind", "value"], name="identity_unique_kind_value")
        ]
        indexes = [
            # The webhook's lookup: (kind, value) exactly, or the same address on another channel.
            models.Index(
                fields=["match_key"],
                condition=Q(match_key__isnull=False),
                name="identity_match_key",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class AccountKind(models.TextChoices):
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    MESSENGER = "messenger", _("Messenger")
    WEBCHAT = "webchat", _("Web chat")


# The identity kind a channel account recognises its customers by.
IDENTITY_KIND_FOR_ACCOUNT = {
    AccountKind.SMS: IdentityKind.PHONE,
    AccountKind.WHATSAPP: IdentityKind.WHATSAPP,
    AccountKind.MESSENGER: IdentityKind.MESSENGER,
    AccountKind.WEBCHAT: IdentityKind.WEBCHAT,
}


def _new_public_key() -> str:
    return secrets.token_urlsafe(12)


class ChannelAccount(models.Model):
    """One number, WhatsApp business number, Facebook page or web-chat widget, with its secrets
    and where its conversations are routed. An empty provider base URL is a sandbox account:
    outbound messages are marked sent without calling anyone (the embedded demo)."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    kind = models.CharField(_("kind"), max_length=12, choices=AccountKind.choices)
    active = models.BooleanField(_("active"), default=True)
    public_key = models.SlugField(
        _("public key"),
        max_length=40,
        unique=True,
        default=_new_public_key,
        help_text=_("Names the account in the web-chat script tag (data-account)."),
    )
    provider_base_url = models.URLField(
        _("provider base URL"),
        blank=True,
        default="",
        help_text=_(
            "E.g. https://api.twilio.com or https://graph.facebook.com. Empty: sandbox, "
            "outbound messages are marked sent without calling the provider."
        ),
    )
    api_version = models.CharField(
        _("API version"), max_length=10, blank=True, default="v19.0", help_text=_("Graph API.")
    )
    account_sid = models.CharField(_("account SID"), max_length=64, blank=True, default="")
    phone_number = models.CharField(
        _("phone number"), max_length=32, blank=True, default="", help_text=_("SMS sender.")
    )
    phone_number_id = models.CharField(
        _("phone number id"), max_length=64, blank=True, default="", help_text=_("WhatsApp.")
    )
    page_id = models.CharField(
        _("page id"), max_length=64, blank=True, default="", help_text=_("Messenger.")
    )
    auth_token = models.CharField(_("auth token"), max_length=200, blank=True, default="")
    app_secret = models.CharField(_("app secret"), max_length=200, blank=True, default="")
    access_token = models.CharField(_("access token"), max_length=500, blank=True, default="")
    verify_token = models.CharField(_("verify token"), max_length=200, blank=True, default="")
    allowed_origins = models.TextField(
        _("allowed origins"),
        blank=True,
        default="",
        help_text=_(
            "Web chat: sites allowed to embed the widget, one origin per line "
            "(https://shop.example.com). This server's own origin is always allowed."
        ),
    )
    queue = models.ForeignKey(
        "routing.Queue",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("queue"),
        help_text=_("Where conversations go unless the bot picks another queue."),
    )
    service_channel = models.ForeignKey(
        "routing.ServiceChannel",
        on_delete=models.PROTECT,
        related_name="+",
        verbose_name=_("service channel"),
    )
    language = models.CharField(
        _("language"), max_length=8, choices=settings.LANGUAGES, default="en"
    )
    bot_flow = models.JSONField(
        _("pre-chat bot flow"),
        default=list,
        blank=True,
        help_text=_(
            'A list of steps, e.g. [{"key": "name", "ask": "Your name?"}, {"key": "topic", '
            '"ask": "About?", "choices": [{"label": "Orders", "value": "orders", '
            '"queue": "Orders"}]}]. Empty: no bot.'
        ),
    )

    class Meta:
        ordering = ["kind", "name"]
        verbose_name = _("channel account")
        verbose_name_plural = _("channel accounts")

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"

    @property
    def identity_kind(self) -> str:
        return IDENTITY_KIND_FOR_ACCOUNT[AccountKind(self.kind)]

    @property
    def is_sandbox(self) -> bool:
        return not self.provider_base_url

    def origin_list(self) -> list[str]:
        return [o.strip().rstrip("/") for o in self.allowed_origins.split() if o.strip()]


class ConversationStatus(models.TextChoices):
    BOT = "bot", _("With the bot")
    WAITING = "waiting", _("Waiting for an agent")
    ACTIVE = "active", _("With an agent")
    ENDED = "ended", _("Ended")


class EndedBy(models.TextChoices):
    AGENT = "agent", _("Agent")
    CUSTOMER = "customer", _("Customer")
    TIMEOUT = "timeout", _("Inactivity")
    SYSTEM = "system", _("System")


OPEN_CONVERSATION = ~Q(status=ConversationStatus.ENDED)


class Conversation(models.Model):
    """A messaging session with one customer on one channel account."""

    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="conversations", verbose_name=_("customer")
    )
    identity = models.ForeignKey(
        CustomerIdentity,
        on_delete=models.PROTECT,
        related_name="conversations",
        verbose_name=_("customer address"),
    )
    account = models.ForeignKey(
        ChannelAccount,
        on_delete=models.PROTECT,
        related_name="conversations",
        verbose_name=_("channel account"),
    )
    status = models.CharField(
        _("status"),
        max_length=10,
        choices=ConversationStatus.choices,
        default=ConversationStatus.WAITING,
    )
    started_at = models.DateTimeField(_("started"))
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    ended_by = models.CharField(
        _("ended by"), max_length=10, choices=EndedBy.choices, blank=True, default=""
    )
    last_activity_at = models.DateTimeField(_("last activity"))
    assigned_agent = models.ForeignKey(
        "presence.Agent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversations",
        verbose_name=_("agent"),
    )
    bot_state = models.JSONField(_("bot state"), default=dict, blank=True)
    bot_answers = models.JSONField(_("bot answers"), default=dict, blank=True)
    work_item = models.OneToOneField(
        "routing.WorkItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="conversation",
        verbose_name=_("work item"),
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = _("conversation")
        verbose_name_plural = _("conversations")
        constraints = [
            # Two messages arriving at once from a new address must not open two conversations.
            models.UniqueConstraint(
                fields=["account", "identity"],
                condition=OPEN_CONVERSATION,
                name="conversation_one_open_per_address",
            ),
            models.CheckConstraint(
                condition=Q(status=ConversationStatus.ENDED, ended_at__isnull=False)
                | (~Q(status=ConversationStatus.ENDED) & Q(ended_at__isnull=True)),
                name="conversation_ended_has_end_time",
            ),
        ]
        indexes = [
            models.Index(
                fields=["last_activity_at"], condition=OPEN_CONVERSATION, name="conv_open_activity"
            ),
            models.Index(fields=["customer", "-started_at"], name="conv_customer_started"),
        ]

    def __str__(self) -> str:
        return _("Conversation #%(id)s") % {"id": self.pk}

    @property
    def is_open(self) -> bool:
        return self.status != ConversationStatus.ENDED


class Direction(models.TextChoices):
    IN = "in", _("Inbound")
    OUT = "out", _("Outbound")


class Author(models.TextChoices):
    CUSTOMER = "customer", _("Customer")
    AGENT = "agent", _("Agent")
    BOT = "bot", _("Bot")
    SYSTEM = "system", _("System")


class DeliveryStatus(models.TextChoices):
    QUEUED = "queued", _("Queued")
    SENT = "sent", _("Sent")
    DELIVERED = "delivered", _("Delivered")
    FAILED = "failed", _("Failed")
    RECEIVED = "received", _("Received")


class Message(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    # Denormalised from the conversation so the provider id is unique per account in one index.
    account = models.ForeignKey(ChannelAccount, on_delete=models.PROTECT, related_name="+")
    direction = models.CharField(_("direction"), max_length=3, choices=Direction.choices)
    author = models.CharField(_("author"), max_length=10, choices=Author.choices)
    agent = models.ForeignKey(
        "presence.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    text = models.TextField(_("text"))
    provider_message_id = models.CharField(
        _("provider message id"), max_length=200, blank=True, default=""
    )
    status = models.CharField(_("delivery"), max_length=10, choices=DeliveryStatus.choices)
    error = models.TextField(_("error"), blank=True, default="")
    attempts = models.PositiveSmallIntegerField(_("send attempts"), default=0)
    last_attempt_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"))
    sent_at = models.DateTimeField(_("sent"), null=True, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    # Bot questions with choices carry them so the customer's widget can offer buttons.
    choices = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name = _("message")
        verbose_name_plural = _("messages")
        constraints = [
            # A provider redelivering a webhook must not store the message twice.
            models.UniqueConstraint(
                fields=["account", "provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="message_provider_id_once_per_account",
            ),
        ]
        indexes = [
            models.Index(fields=["conversation", "created_at"], name="message_conv_created"),
            models.Index(
                fields=["next_attempt_at"], condition=Q(status="queued"), name="message_queued"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_direction_display()} {self.text[:40]}"


class CaseStatus(models.TextChoices):
    NEW = "new", _("New")
    OPEN = "open", _("Open")
    WAITING = "waiting", _("Waiting on customer")
    CLOSED = "closed", _("Closed")


class CasePriority(models.TextChoices):
    URGENT = "urgent", _("Urgent")
    HIGH = "high", _("High")
    NORMAL = "normal", _("Normal")
    LOW = "low", _("Low")


# Work item priority (1 is most urgent) for each case priority.
CASE_ITEM_PRIORITY = {
    CasePriority.URGENT: 1,
    CasePriority.HIGH: 3,
    CasePriority.NORMAL: 5,
    CasePriority.LOW: 8,
}


class CaseOrigin(models.TextChoices):
    WEB = "web", _("Self-service")
    API = "api", _("API")
    SMS = "sms", _("SMS")
    WHATSAPP = "whatsapp", _("WhatsApp")
    MESSENGER = "messenger", _("Messenger")
    WEBCHAT = "webchat", _("Web chat")
    EMAIL = "email", _("E-mail")
    PHONE = "phone", _("Phone")


class CaseVerification(models.TextChoices):
    NOT_NEEDED = "not_needed", _("Not needed")
    PENDING = "pending", _("Unverified")
    VERIFIED = "verified", _("Verified")


def _new_case_token() -> str:
    return secrets.token_urlsafe(24)


class Case(models.Model):
    """The classic routed record: a customer's problem, followed until it is closed."""

    subject = models.CharField(_("subject"), max_length=200)
    description = models.TextField(_("description"), blank=True, default="")
    status = models.CharField(
        _("status"), max_length=10, choices=CaseStatus.choices, default=CaseStatus.NEW
    )
    priority = models.CharField(
        _("priority"), max_length=10, choices=CasePriority.choices, default=CasePriority.NORMAL
    )
    customer = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="cases", verbose_name=_("customer")
    )
    origin = models.CharField(_("channel of origin"), max_length=12, choices=CaseOrigin.choices)
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="cases",
        verbose_name=_("from conversation"),
    )
    access_token = models.CharField(max_length=64, unique=True, default=_new_case_token)
    work_item = models.OneToOneField(
        "routing.WorkItem",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="case",
        verbose_name=_("work item"),
    )
    opened_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # A self-service case names its customer by an e-mail anyone can type: until the sender
    # confirms from that address, agents must not take it as that customer's request.
    verification = models.CharField(
        _("requester verification"),
        max_length=12,
        choices=CaseVerification.choices,
        default=CaseVerification.NOT_NEEDED,
    )
    verified_at = models.DateTimeField(_("verified"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"))
    updated_at = models.DateTimeField(_("updated"))
    closed_at = models.DateTimeField(_("closed"), null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("case")
        verbose_name_plural = _("cases")
        indexes = [models.Index(fields=["customer", "-created_at"], name="case_customer_created")]
        constraints = [
            models.CheckConstraint(
                condition=Q(verification=CaseVerification.VERIFIED, verified_at__isnull=False)
                | (~Q(verification=CaseVerification.VERIFIED) & Q(verified_at__isnull=True)),
                name="case_verified_has_time",
            )
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"

    @property
    def is_unverified(self) -> bool:
        return self.verification == CaseVerification.PENDING


class MergeRecord(models.Model):
    """One merge of a customer into another: who did it, and exactly what moved, so that it can
    be undone. The id lists are what the merge moved, not what the customers hold later."""

    survivor = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="merges_in", verbose_name=_("survivor")
    )
    merged = models.ForeignKey(
        Customer, on_delete=models.PROTECT, related_name="merges_out", verbose_name=_("merged")
    )
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("merged by"),
    )
    merged_at = models.DateTimeField(_("merged"))
    identity_ids = models.JSONField(_("identities moved"), default=list)
    conversation_ids = models.JSONField(_("conversations moved"), default=list)
    case_ids = models.JSONField(_("cases moved"), default=list)
    # Customers merged into ``merged`` earlier, re-pointed to the survivor by this merge.
    redirected_customer_ids = models.JSONField(_("earlier merges re-pointed"), default=list)
    took_display_name = models.BooleanField(_("survivor took the name"), default=False)
    undone_at = models.DateTimeField(_("undone"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("undone by"),
    )

    class Meta:
        ordering = ["-merged_at", "-id"]
        verbose_name = _("customer merge")
        verbose_name_plural = _("customer merges")
        constraints = [
            models.CheckConstraint(
                condition=~Q(survivor=models.F("merged")), name="merge_record_two_customers"
            ),
            # A customer is merged away at most once at a time.
            models.UniqueConstraint(
                fields=["merged"], condition=Q(undone_at__isnull=True), name="merge_record_one_live"
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.merged_id} -> #{self.survivor_id}"


class ClaimStatus(models.TextChoices):
    PENDING = "pending", _("Code sent")
    VERIFIED = "verified", _("Verified")
    SUGGESTED = "suggested", _("Suggested match")
    MERGED = "merged", _("Merged")
    DISMISSED = "dismissed", _("Dismissed")


class IdentityClaim(models.Model):
    """A customer said an address is theirs that another customer already has.

    Either a one-time code went to that address over its own channel and the customer is to
    type it back in ``conversation`` (PENDING: only its salted hash is stored), or no code could
    be sent, or it was not typed right in time, and the match is suggested to agents
    (SUGGESTED) until someone merges or dismisses it.
    """

    customer = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="claims", verbose_name=_("claimed by")
    )
    owner = models.ForeignKey(
        Customer, on_delete=models.CASCADE, related_name="claimed", verbose_name=_("known as")
    )
    identity = models.ForeignKey(
        CustomerIdentity,
        on_delete=models.CASCADE,
        related_name="claims",
        verbose_name=_("matching address"),
    )
    kind = models.CharField(_("kind"), max_length=12, choices=IdentityKind.choices)
    value = models.CharField(_("address as given"), max_length=200)
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="claims",
        verbose_name=_("conversation"),
    )
    status = models.CharField(_("status"), max_length=10, choices=ClaimStatus.choices)
    code_salt = models.CharField(max_length=32, blank=True, default="")
    code_hash = models.CharField(max_length=128, blank=True, default="")
    sent_to = models.CharField(_("code sent to"), max_length=40, blank=True, default="")
    expires_at = models.DateTimeField(_("code expires"), null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(_("wrong codes"), default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(_("created"))
    resolved_at = models.DateTimeField(_("resolved"), null=True, blank=True)
    merge = models.ForeignKey(
        MergeRecord, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = _("identity claim")
        verbose_name_plural = _("identity claims")
        constraints = [
            models.CheckConstraint(
                condition=~Q(customer=models.F("owner")), name="claim_two_customers"
            ),
            # One code at a time per conversation: the customer types back the latest one.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status="pending"),
                name="claim_one_pending_per_conversation",
            ),
        ]
        indexes = [
            models.Index(fields=["customer", "status"], name="claim_customer_status"),
            models.Index(fields=["owner", "status"], name="claim_owner_status"),
        ]

    def __str__(self) -> str:
        return f"#{self.customer_id} ~ #{self.owner_id} ({self.status})"


class QuickReply(models.Model):
    """A canned answer agents can insert with one click."""

    title = models.CharField(_("title"), max_length=80)
    text = models.TextField(_("text"))
    language = models.CharField(
        _("language"), max_length=8, choices=settings.LANGUAGES, blank=True, default=""
    )
    position = models.PositiveSmallIntegerField(_("position"), default=0)

    class Meta:
        ordering = ["position", "title"]
        verbose_name = _("quick reply")
        verbose_name_plural = _("quick replies")

    def __str__(self) -> str:
        return self.title
