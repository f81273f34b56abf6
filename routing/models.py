"""Routing data: service channels, queues, routing configurations, work items, agent work."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from simple_history.models import HistoricalRecords


class ServiceChannel(models.Model):
    """A kind of work (case, chat, messaging, lead, social post, voice) with its default size."""

    key = models.SlugField(_("key"), max_length=40, unique=True)
    label = models.CharField(_("label"), max_length=80)
    default_size_units = models.PositiveSmallIntegerField(
        _("default size (units)"), default=1, validators=[MinValueValidator(1)]
    )

    class Meta:
        ordering = ["label"]
        verbose_name = _("service channel")
        verbose_name_plural = _("service channels")
        constraints = [
            models.CheckConstraint(
                condition=Q(default_size_units__gte=1), name="channel_default_size_positive"
            )
        ]

    def __str__(self) -> str:
        return self.label


class RoutingModel(models.TextChoices):
    LEAST_ACTIVE = "least_active", _("Least active (fewest open items)")
    MOST_AVAILABLE = "most_available", _("Most available (most spare capacity)")
    BEST_SKILLED = "best_skilled", _("Best skilled (highest sum of required skill levels)")


class RoutingConfiguration(models.Model):
    """How a queue's items are routed: priority across queues, model, size, push timeout."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    routing_priority = models.PositiveSmallIntegerField(
        _("routing priority"),
        default=1,
        validators=[MinValueValidator(1)],
        help_text=_("1 is highest; compared across all queues."),
    )
    routing_model = models.CharField(
        _("routing model"),
        max_length=20,
        choices=RoutingModel.choices,
        default=RoutingModel.LEAST_ACTIVE,
    )
    size_units = models.PositiveSmallIntegerField(
        _("item size (units)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text=_(
            "Capacity units one item takes. Leave empty to use a percentage or the "
            "channel's default."
        ),
    )
    size_percent = models.PositiveSmallIntegerField(
        _("item size (percent of capacity)"),
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text=_("Share of the agent's capacity one item takes, rounded up to whole units."),
    )
    push_timeout_seconds = models.PositiveIntegerField(
        _("push timeout (s)"),
        default=30,
        validators=[MinValueValidator(5), MaxValueValidator(3600)],
        help_text=_("How long an agent has to accept an offer before it goes to someone else."),
    )
    service_level_target_seconds = models.PositiveIntegerField(
        _("service level target (s)"),
        default=30,
        validators=[MinValueValidator(1)],
        help_text=_(
            "An item accepted within this many seconds of entering the queue counts "
            "towards service level."
        ),
    )
    service_level_goal_percent = models.PositiveSmallIntegerField(
        _("service level goal (%)"),
        default=80,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
    )
    # Who changed what, when: versions listed and rolled back by ``services.versions``.
    history = HistoricalRecords()

    class Meta:
        ordering = ["routing_priority", "name"]
        verbose_name = _("routing configuration")
        verbose_name_plural = _("routing configurations")
        constraints = [
            models.CheckConstraint(
                condition=Q(size_units__isnull=True) | Q(size_percent__isnull=True),
                name="routing_config_one_size_kind",
            ),
            models.CheckConstraint(
                condition=Q(routing_priority__gte=1), name="routing_config_priority_positive"
            ),
            models.CheckConstraint(
                condition=Q(size_percent__isnull=True)
                | (Q(size_percent__gte=1) & Q(size_percent__lte=100)),
                name="routing_config_percent_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Queue(models.Model):
    """Where work items wait; its members are the agents who may receive them."""

    name = models.CharField(_("name"), max_length=80, unique=True)
    routing_config = models.ForeignKey(
        RoutingConfiguration,
        on_delete=models.PROTECT,
        related_name="queues",
        verbose_name=_("routing configuration"),
    )
    members = models.ManyToManyField(
        "presence.Agent",
        through="QueueMembership",
        related_name="queues",
        blank=True,
        verbose_name=_("members"),
    )
    supervisors = models.ManyToManyField(
        settings.AUTH_USER_MODEL,
        related_name="supervised_queues",
        blank=True,
        verbose_name=_("supervisors"),
    )

    class Meta:
        ordering = ["name"]
        verbose_name = _("queue")
        verbose_name_plural = _("queues")

    def __str__(self) -> str:
        return self.name


class QueueMembership(models.Model):
    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="memberships")
    agent = models.ForeignKey(
        "presence.Agent", on_delete=models.CASCADE, related_name="memberships"
    )

    class Meta:
        verbose_name = _("queue member")
        verbose_name_plural = _("queue members")
        constraints = [
            models.UniqueConstraint(fields=["queue", "agent"], name="queue_membership_unique")
        ]

    def __str__(self) -> str:
        return f"{self.agent} in {self.queue}"


class WorkItemStatus(models.TextChoices):
    WAITING = "waiting", _("Waiting")
    OFFERED = "offered", _("Offered")
    ASSIGNED = "assigned", _("Assigned")
    CLOSED = "closed", _("Closed")
    CANCELED = "canceled", _("Canceled")


class WorkItem(models.Model):
    """One routable piece of work, linked to the record it stands for."""

    channel = models.ForeignKey(
        ServiceChannel,
        on_delete=models.PROTECT,
        related_name="work_items",
        verbose_name=_("channel"),
    )
    queue = models.ForeignKey(
        Queue, on_delete=models.PROTECT, related_name="work_items", verbose_name=_("queue")
    )
    status = models.CharField(
        _("status"), max_length=10, choices=WorkItemStatus.choices, default=WorkItemStatus.WAITING
    )
    # Copied from the queue's configuration on enqueue (and kept in step when it changes) so the
    # claim query orders and filters on one index without a join.
    routing_priority = models.PositiveSmallIntegerField(_("routing priority"))
    priority = models.PositiveSmallIntegerField(
        _("priority"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_("1 is most urgent; orders items within the same routing priority."),
    )
    secondary_priority = models.PositiveSmallIntegerField(
        _("secondary priority"),
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(10)],
        help_text=_("1 is most urgent; orders items of equal priority before their age."),
    )
    size_units = models.PositiveSmallIntegerField(_("size (units)"), null=True, blank=True)
    size_percent = models.PositiveSmallIntegerField(
        _("size (percent of capacity)"), null=True, blank=True
    )
    subject = models.CharField(_("subject"), max_length=255)
    payload = models.JSONField(_("payload"), default=dict, blank=True)
    record_type = models.ForeignKey(
        ContentType, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    record_id = models.CharField(max_length=64, blank=True, default="")
    record = GenericForeignKey("record_type", "record_id")
    created_at = models.DateTimeField(_("created"))
    enqueued_at = models.DateTimeField(
        _("entered queue"),
        help_text=_("When the item entered its queue; kept on decline and timeout."),
    )
    preferred_agent = models.ForeignKey(
        "presence.Agent",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("preferred agent"),
    )
    preferred_until = models.DateTimeField(_("preferred until"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    # The last hand-over: who passed the work on and what they told the next agent (shown with
    # the work in the next agent's console; the transferring agent work keeps it as its note).
    transfer_from = models.CharField(_("transferred by"), max_length=150, blank=True, default="")
    transfer_note = models.TextField(_("transfer note"), blank=True, default="")

    class Meta:
        ordering = ["routing_priority", "priority", "secondary_priority", "enqueued_at", "id"]
        verbose_name = _("work item")
        verbose_name_plural = _("work items")
        indexes = [
            # The claim path: waiting items in routing order, and nothing else.
            models.Index(
                fields=["routing_priority", "priority", "secondary_priority", "enqueued_at", "id"],
                condition=Q(status="waiting"),
                name="workitem_waiting_order",
            ),
            models.Index(fields=["queue", "status"], name="workitem_queue_status"),
            models.Index(fields=["record_type", "record_id"], name="workitem_record"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(size_units__isnull=False) | Q(size_percent__isnull=False),
                name="workitem_has_size",
            ),
            models.CheckConstraint(
                condition=Q(priority__gte=1) & Q(priority__lte=10), name="workitem_priority_range"
            ),
            models.CheckConstraint(
                condition=Q(secondary_priority__gte=1) & Q(secondary_priority__lte=10),
                name="workitem_secondary_priority_range",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.subject}"


SKILL_LEVEL_VALIDATORS = [MinValueValidator(0), MaxValueValidator(Decimal("99.99"))]


class Skill(models.Model):
    """Something work can need and agents can have, at a level from 0 to 99.99.

    ``attribute``/``value``: the skill is also required, automatically, by any item whose payload
    carries that attribute with that value (``language`` = ``ja`` requires "Japanese").
    """

    name = models.CharField(_("name"), max_length=80, unique=True)
    description = models.TextField(_("description"), blank=True, default="")
    attribute = models.CharField(
        _("matched attribute"),
        max_length=60,
        blank=True,
        default="",
        help_text=_("A payload field (for example language) that makes an item require it."),
    )
    value = models.CharField(_("matched value"), max_length=120, blank=True, default="")

    class Meta:
        ordering = ["name"]
        verbose_name = _("skill")
        verbose_name_plural = _("skills")
        constraints = [
            models.CheckConstraint(
                condition=Q(attribute="", value="") | (~Q(attribute="") & ~Q(value="")),
                name="skill_attribute_and_value_together",
            )
        ]
        indexes = [models.Index(fields=["attribute", "value"], name="skill_attribute")]

    def __str__(self) -> str:
        return self.name


class AgentSkill(models.Model):
    """An agent's level in a skill."""

    agent = models.ForeignKey("presence.Agent", on_delete=models.CASCADE, related_name="skills")
    skill = models.ForeignKey(Skill, on_delete=models.PROTECT, related_name="agent_skills")
    level = models.DecimalField(
        _("level"), max_digits=4, decimal_places=2, validators=SKILL_LEVEL_VALIDATORS
    )

    class Meta:
        ordering = ["skill__name"]
        verbose_name = _("agent skill")
        verbose_name_plural = _("agent skills")
        constraints = [
            models.UniqueConstraint(fields=["agent", "skill"], name="agentskill_unique"),
            models.CheckConstraint(
                condition=Q(level__gte=0) & Q(level__lte=Decimal("99.99")),
                name="agentskill_level_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.skill} {self.level}"


class ItemSkill(models.Model):
    """A skill an item needs, at a minimum level.

    A required one stays until the item is taken; an additional one is dropped once the item has
    waited ``drop_after_seconds`` in its queue (relaxation), so the item widens to more agents.
    """

    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="skills")
    skill = models.ForeignKey(Skill, on_delete=models.PROTECT, related_name="+")
    min_level = models.DecimalField(
        _("minimum level"),
        max_digits=4,
        decimal_places=2,
        default=Decimal("0"),
        validators=SKILL_LEVEL_VALIDATORS,
    )
    additional = models.BooleanField(
        _("additional"), default=False, help_text=_("Dropped after its wait; else required.")
    )
    drop_after_seconds = models.PositiveIntegerField(
        _("drop after (seconds)"), null=True, blank=True
    )

    class Meta:
        ordering = ["item", "id"]
        verbose_name = _("required skill")
        verbose_name_plural = _("required skills")
        constraints = [
            models.UniqueConstraint(fields=["item", "skill"], name="itemskill_unique"),
            models.CheckConstraint(
                condition=Q(min_level__gte=0) & Q(min_level__lte=Decimal("99.99")),
                name="itemskill_level_range",
            ),
            models.CheckConstraint(
                condition=Q(additional=False, drop_after_seconds__isnull=True)
                | Q(additional=True, drop_after_seconds__isnull=False),
                name="itemskill_additional_has_drop_after",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.skill} >= {self.min_level}"


class AgentWorkState(models.TextChoices):
    PUSHED = "pushed", _("Pushed")
    OPENED = "opened", _("Opened")
    CLOSED = "closed", _("Closed")
    DECLINED = "declined", _("Declined")
    TIMED_OUT = "timed_out", _("Timed out")
    CANCELED = "canceled", _("Canceled")
    TRANSFERRED = "transferred", _("Transferred")


LIVE_STATES = (AgentWorkState.PUSHED, AgentWorkState.OPENED)


class AgentWork(models.Model):
    """One offer or assignment of an item to an agent, with its whole life."""

    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="agent_works")
    agent = models.ForeignKey("presence.Agent", on_delete=models.PROTECT, related_name="works")
    queue = models.ForeignKey(Queue, on_delete=models.PROTECT, related_name="+")
    channel = models.ForeignKey(ServiceChannel, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(
        _("state"), max_length=12, choices=AgentWorkState.choices, default=AgentWorkState.PUSHED
    )
    # Units exact to a hundredth (``engine.size_for``), as the agent's load.
    units = models.DecimalField(_("units"), max_digits=7, decimal_places=2)
    pushed_at = models.DateTimeField(_("pushed"))
    expires_at = models.DateTimeField(_("offer expires"), null=True, blank=True)
    opened_at = models.DateTimeField(_("accepted"), null=True, blank=True)
    ended_at = models.DateTimeField(_("ended"), null=True, blank=True)
    # Time the item had waited when pushed: enqueued_at of the item at push time.
    enqueued_at = models.DateTimeField(_("entered queue"))
    decline_reason = models.CharField(_("decline reason"), max_length=200, blank=True, default="")
    end_note = models.TextField(_("note"), blank=True, default="")
    routing_reason = models.JSONField(_("why this agent"), default=dict, blank=True)
    auto_accepted = models.BooleanField(_("auto-accepted"), default=False)

    class Meta:
        ordering = ["-pushed_at", "-id"]
        verbose_name = _("agent work")
        verbose_name_plural = _("agent work")
        constraints = [
            # The heart of "never assigned twice": one live offer or assignment per item.
            models.UniqueConstraint(
                fields=["item"],
                condition=Q(state__in=["pushed", "opened"]),
                name="agentwork_one_live_per_item",
            ),
            models.CheckConstraint(condition=Q(units__gt=0), name="agentwork_units_positive"),
        ]
        indexes = [
            models.Index(
                fields=["agent", "state"],
                condition=Q(state__in=["pushed", "opened"]),
                name="agentwork_live_by_agent",
            ),
            models.Index(
                fields=["expires_at"],
                condition=Q(state="pushed"),
                name="agentwork_pushed_expiry",
            ),
            models.Index(fields=["pushed_at"], name="agentwork_pushed_at"),
            models.Index(fields=["item", "state"], name="agentwork_item_state"),
        ]

    def __str__(self) -> str:
        return f"{self.item} -> {self.agent} ({self.state})"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES


class ActionLog(models.Model):
    """Who did what to routing by hand (supervisor moves, direct pushes, presence overrides)."""

    at = models.DateTimeField(_("at"))
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    verb = models.CharField(_("action"), max_length=40)
    item = models.ForeignKey(
        WorkItem, on_delete=models.CASCADE, null=True, blank=True, related_name="actions"
    )
    agent = models.ForeignKey(
        "presence.Agent", on_delete=models.CASCADE, null=True, blank=True, related_name="actions"
    )
    detail = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = _("action log entry")
        verbose_name_plural = _("action log")

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.verb}"


class IntakeRequest(models.Model):
    """An ``Idempotency-Key`` an intake client sent with ``POST /api/work-items/``, the item it
    created and the answer it got: a retry with the same key gets the same answer, never a second
    item. Written in the transaction that creates the item; forgotten after
    ``ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS``."""

    client = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(_("idempotency key"), max_length=255)
    # SHA-256 of the request body (canonical JSON): the same key with another body is refused.
    fingerprint = models.CharField(max_length=64)
    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="+")
    response_status = models.PositiveSmallIntegerField()
    response_body = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(_("created"))

    class Meta:
        verbose_name = _("intake request")
        verbose_name_plural = _("intake requests")
        constraints = [
            # Two concurrent requests with one key: the second insert waits for the first to
            # commit, then fails; it answers with the first one's item.
            models.UniqueConstraint(fields=["client", "key"], name="intakerequest_one_per_key"),
        ]
        indexes = [models.Index(fields=["created_at"], name="intakerequest_created")]

    def __str__(self) -> str:
        return f"{self.key} -> {self.item_id}"


class ClassificationRule(models.Model):
    """Ordered conditions on a new (or re-classified) item and what to do when they hold: set its
    queue, priority, secondary priority, add skills, stop. Evaluated by ``routing.rules``;
    checked and saved by ``services.classification``."""

    name = models.CharField(_("name"), max_length=120, unique=True)
    position = models.PositiveIntegerField(
        _("position"), default=100, help_text=_("Rules run from the lowest position up.")
    )
    active = models.BooleanField(_("active"), default=True)
    queue = models.ForeignKey(
        Queue,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="classification_rules",
        verbose_name=_("only for queue"),
        help_text=_("Leave empty to apply to items of every queue."),
    )
    conditions = models.JSONField(
        _("conditions"),
        default=list,
        blank=True,
        help_text=_(
            'All must hold, e.g. [{"field": "payload.tier", "op": "eq", "value": "gold"}]. '
            "An empty list always holds."
        ),
    )
    actions = models.JSONField(
        _("actions"),
        default=dict,
        help_text=_(
            'e.g. {"queue": "Billing", "priority": 2, "skills": [{"skill": "Japanese", '
            '"min_level": 3}], "stop": true}'
        ),
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("classification rule")
        verbose_name_plural = _("classification rules")

    def __str__(self) -> str:
        return self.name


class ExceptionTrigger(models.TextChoices):
    WAITED = "waited", _("Waited longer than N seconds in its queue")
    QUEUE_LENGTH = "queue_length", _("Queue holds more than N waiting items")
    NO_AGENT = "no_agent", _("No agent online for its channel for N seconds")


class ExceptionRule(models.Model):
    """What to do with items that wait too long, in a queue too long, or with nobody online:
    raise priority, move, add or drop skills, tell the queue's supervisors. Fires once per item
    (``ExceptionFiring``); run every few seconds by ``services.exceptions.run_exception_rules``."""

    name = models.CharField(_("name"), max_length=120, unique=True)
    position = models.PositiveIntegerField(_("position"), default=100)
    active = models.BooleanField(_("active"), default=True)
    queue = models.ForeignKey(
        Queue,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="exception_rules",
        verbose_name=_("queue"),
        help_text=_("Leave empty to watch every queue."),
    )
    trigger = models.CharField(_("trigger"), max_length=20, choices=ExceptionTrigger.choices)
    threshold = models.PositiveIntegerField(
        _("N"), help_text=_("Seconds, or items for a queue-length trigger.")
    )
    actions = models.JSONField(
        _("actions"),
        default=dict,
        help_text=_(
            'e.g. {"priority_by": 2} or {"priority_to": 1}, {"queue": "Escalations"}, '
            '{"add_skills": [{"skill": "Senior"}]}, {"drop_skills": ["French"]}, '
            '{"notify": true}'
        ),
    )
    history = HistoricalRecords()

    class Meta:
        ordering = ["position", "id"]
        verbose_name = _("exception rule")
        verbose_name_plural = _("exception rules")
        constraints = [
            models.CheckConstraint(
                condition=Q(trigger__in=["waited", "queue_length", "no_agent"]),
                name="exceptionrule_trigger_known",
            )
        ]

    def __str__(self) -> str:
        return self.name


class ExceptionFiring(models.Model):
    """An exception rule fired for an item: it never fires for that item again."""

    rule = models.ForeignKey(ExceptionRule, on_delete=models.CASCADE, related_name="firings")
    item = models.ForeignKey(WorkItem, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField(_("at"))

    class Meta:
        verbose_name = _("exception rule firing")
        verbose_name_plural = _("exception rule firings")
        constraints = [
            models.UniqueConstraint(fields=["rule", "item"], name="exceptionfiring_once_per_item")
        ]
        indexes = [models.Index(fields=["rule", "at"], name="exceptionfiring_rule_at")]

    def __str__(self) -> str:
        return f"{self.rule} -> {self.item_id}"
