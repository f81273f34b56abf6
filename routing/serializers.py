"""API shapes of routing: configuration records, work items and agent work.

Input serializers only validate; the views hand ``validated_data`` to one service. Output
serializers render what the services return.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from omnirouter.errors import DomainError
from presence.models import Agent
from routing import engine
from routing.models import (
    ActionLog,
    AgentSkill,
    AgentWork,
    ClassificationRule,
    ExceptionRule,
    ItemSkill,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import explain_wait
from routing.services.skills import SkillNeed, parse_needs


@extend_schema_field(OpenApiTypes.NUMBER)
class UnitsField(serializers.Field):
    """Capacity units, exact to a hundredth: a number, whole when it is (3, 1.5, 0.33)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, value: Any) -> int | float:
        return engine.as_number(value)

    def to_internal_value(self, data: Any) -> Any:  # read only: never called
        raise NotImplementedError


# --- Configuration ---------------------------------------------------------------------------


class ServiceChannelSerializer(serializers.ModelSerializer):
    class Meta:
        model = ServiceChannel
        fields = ["id", "key", "label", "default_size_units"]


class RoutingConfigurationSerializer(serializers.ModelSerializer):
    queues: serializers.PrimaryKeyRelatedField[Queue] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )

    class Meta:
        model = RoutingConfiguration
        fields = [
            "id",
            "name",
            "routing_priority",
            "routing_model",
            "size_units",
            "size_percent",
            "push_timeout_seconds",
            "service_level_target_seconds",
            "service_level_goal_percent",
            "queues",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # A PATCH may set one kind of size while the record holds the other.
        units = attrs.get("size_units", getattr(self.instance, "size_units", None))
        percent = attrs.get("size_percent", getattr(self.instance, "size_percent", None))
        if units is not None and percent is not None:
            raise serializers.ValidationError(
                {
                    "size_percent": _(
                        "Give the item size in units or as a percentage of capacity, not both."
                    )
                }
            )
        return attrs


def level_field(**kwargs: Any) -> serializers.DecimalField:
    """A skill level: 0 to 99.99 with two decimals; anything else is a 400 naming the range."""
    # No digit limit of its own: 100 is refused by the range, which says what is allowed.
    return serializers.DecimalField(
        max_digits=None,
        decimal_places=2,
        min_value=Decimal("0"),
        max_value=Decimal("99.99"),
        help_text=_("From 0 to 99.99, two decimals."),
        **kwargs,
    )


class ServiceChannelNameSerializer(serializers.ModelSerializer):
    """A channel as intake clients and agents see it: what to post to."""

    class Meta:
        model = ServiceChannel
        fields = ["id", "key", "label"]
        read_only_fields = fields


class QueueNameSerializer(serializers.ModelSerializer):
    """A queue as intake clients and agents see it: no members, no supervisors."""

    class Meta:
        model = Queue
        fields = ["id", "name"]
        read_only_fields = fields


class SkillSerializer(serializers.ModelSerializer):
    class Meta:
        model = Skill
        fields = ["id", "name", "description", "attribute", "value"]


class AgentSkillSerializer(serializers.ModelSerializer):
    skill_name = serializers.CharField(source="skill.name", read_only=True)
    level = level_field()

    class Meta:
        model = AgentSkill
        fields = ["id", "agent", "skill", "skill_name", "level"]
        # One row per agent and skill: the service answers a second one with a clear 400.
        validators: list[Any] = []


class AgentSkillUpdateSerializer(serializers.Serializer):
    level = level_field()


class AgentSkillFilterSerializer(serializers.Serializer):
    agent = serializers.IntegerField(min_value=1, required=False)


class QueueSerializer(serializers.ModelSerializer):
    members = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=Agent.objects.all(),
        required=False,
        help_text=_("Ids of the agents who may receive this queue's work."),
    )
    supervisors = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=get_user_model().objects.all(),
        required=False,
        help_text=_("Ids of the users who supervise this queue."),
    )

    class Meta:
        model = Queue
        fields = ["id", "name", "routing_config", "members", "supervisors"]


# --- Work items ------------------------------------------------------------------------------


class WorkItemCreateSerializer(serializers.Serializer):
    queue = serializers.PrimaryKeyRelatedField(
        queryset=Queue.objects.select_related("routing_config")
    )
    channel = serializers.PrimaryKeyRelatedField(queryset=ServiceChannel.objects.all())
    subject = serializers.CharField(max_length=255)
    priority = serializers.IntegerField(
        min_value=1,
        max_value=10,
        default=5,
        help_text=_("1 is most urgent; orders items within the same routing priority."),
    )
    secondary_priority = serializers.IntegerField(
        min_value=1,
        max_value=10,
        default=5,
        help_text=_("1 is most urgent; orders items of equal priority before their age."),
    )
    payload = serializers.DictField(
        required=False,
        default=dict,
        help_text=_("Anything the agent needs to handle the item (a JSON object)."),
    )
    skills = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        default=list,
        help_text=_(
            'Skills the item requires: [{"skill": <id or name>, "min_level": 0-99.99, '
            '"additional": false, "drop_after_seconds": <only for additional ones>}]. '
            "Skills matched to the payload's attributes are required too."
        ),
    )

    def validate_skills(self, raw: list[dict[str, Any]]) -> list[SkillNeed]:
        for entry in raw:
            if "skill" not in entry:
                raise serializers.ValidationError(_("Each skill says which: a skill id or name."))
        try:
            return parse_needs(raw)
        except DomainError as error:
            raise serializers.ValidationError(error.message) from error

    preferred_agent = serializers.CharField(
        required=False,
        max_length=150,
        help_text=_(
            "An agent of the queue (id or username) the item waits for first, while they are "
            "online for its channel; after preferred_for_seconds any member may have it."
        ),
    )
    preferred_for_seconds = serializers.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 3600,
        help_text=_(
            "How long the item waits for its preferred agent (default: "
            "ROUTING_PREFERRED_AGENT_SECONDS, 60)."
        ),
        error_messages={
            "min_value": _("Wait at least one second for the preferred agent."),
            "max_value": _("Wait at most a week (604800 seconds) for the preferred agent."),
        },
    )

    def validate_preferred_agent(self, value: str) -> Agent:
        # An id when it is one (ASCII digits within a bigint), else a username.
        is_id = value.isascii() and value.isdigit() and len(value) <= 18
        agent = (
            Agent.objects.filter(pk=int(value)).first()
            if is_id
            else Agent.objects.filter(user__username=value).first()
        )
        if agent is None:
            raise serializers.ValidationError(
                _("No agent with the id or username %(value)s.") % {"value": value}
            )
        return agent

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The service's own words: the intake option is ``preferred_agent`` + ``preferred_for``.
        seconds = attrs.pop("preferred_for_seconds", None)
        if seconds is not None:
            attrs["preferred_for"] = timedelta(seconds=seconds)
        return attrs


class WorkItemFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=WorkItemStatus.choices, required=False)
    queue = serializers.IntegerField(min_value=1, required=False)


class SizeSerializer(serializers.Serializer):
    units = serializers.IntegerField(allow_null=True, source="size_units")
    percent = serializers.IntegerField(
        allow_null=True,
        source="size_percent",
        help_text=_("Share of the receiving agent's capacity, when not given in units."),
    )


class ItemSkillSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="skill.name", read_only=True)
    drops_at = serializers.SerializerMethodField(
        help_text=_("When an additional skill stops being required; null for a required one.")
    )
    in_force = serializers.SerializerMethodField(help_text=_("Whether it is required now."))

    class Meta:
        model = ItemSkill
        fields = [
            "skill",
            "name",
            "min_level",
            "additional",
            "drop_after_seconds",
            "drops_at",
            "in_force",
        ]
        read_only_fields = fields

    def get_drops_at(self, need: ItemSkill) -> datetime | None:
        if not need.additional or need.drop_after_seconds is None:
            return None
        return need.item.enqueued_at + timedelta(seconds=need.drop_after_seconds)

    def get_in_force(self, need: ItemSkill) -> bool:
        drops_at = self.get_drops_at(need)
        return drops_at is None or timezone.now() < drops_at


class WorkItemSerializer(serializers.ModelSerializer):
    queue_name = serializers.CharField(source="queue.name", read_only=True)
    channel_key = serializers.CharField(source="channel.key", read_only=True)
    size = SizeSerializer(source="*", read_only=True)
    skills = serializers.SerializerMethodField(help_text=_("Skills the item requires."))
    preferred_agent_username = serializers.CharField(
        source="preferred_agent.user.username",
        read_only=True,
        allow_null=True,
        default=None,
        help_text=_("The agent the item waits for first, if any."),
    )

    class Meta:
        model = WorkItem
        fields = [
            "id",
            "status",
            "queue",
            "queue_name",
            "channel",
            "channel_key",
            "subject",
            "priority",
            "secondary_priority",
            "routing_priority",
            "payload",
            "size",
            "skills",
            "preferred_agent",
            "preferred_agent_username",
            "preferred_until",
            "created_at",
            "enqueued_at",
            "ended_at",
        ]
        read_only_fields = fields

    @extend_schema_field(ItemSkillSerializer(many=True))
    def get_skills(self, item: WorkItem) -> list[dict[str, Any]]:
        # Lists prefetch them (with their skill); a single item reads them in one query.
        prefetched = getattr(item, "_prefetched_objects_cache", {})
        needs = item.skills.all() if "skills" in prefetched else item.skills.select_related("skill")
        return list(ItemSkillSerializer(needs, many=True).data)


class AgentWorkHistorySerializer(serializers.ModelSerializer):
    units = UnitsField()
    agent_username = serializers.CharField(source="agent.user.username", read_only=True)
    queue_name = serializers.CharField(source="queue.name", read_only=True)
    note = serializers.CharField(source="end_note", read_only=True)
    why = serializers.SerializerMethodField(help_text=_("Why routing chose this agent."))

    class Meta:
        model = AgentWork
        fields = [
            "id",
            "state",
            "agent",
            "agent_username",
            "queue",
            "queue_name",
            "units",
            "pushed_at",
            "expires_at",
            "opened_at",
            "ended_at",
            "decline_reason",
            "note",
            "auto_accepted",
            "why",
            "routing_reason",
        ]
        read_only_fields = fields

    def get_why(self, work: AgentWork) -> str:
        return (work.routing_reason or {}).get("text", "")


class ActionLogSerializer(serializers.ModelSerializer):
    actor_username = serializers.CharField(
        source="actor.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = ActionLog
        fields = ["id", "at", "verb", "actor", "actor_username", "detail"]
        read_only_fields = fields


class WorkItemDetailSerializer(WorkItemSerializer):
    history = AgentWorkHistorySerializer(source="agent_works", many=True, read_only=True)
    actions = ActionLogSerializer(
        many=True,
        read_only=True,
        help_text=_(
            "What was done to the item besides offers: rules that fired (classified, "
            "exception_rule), supervisors' moves and pushes."
        ),
    )
    waiting_because = serializers.SerializerMethodField(
        help_text=_("Why the item still waits; empty unless it is waiting.")
    )

    class Meta(WorkItemSerializer.Meta):
        fields = [*WorkItemSerializer.Meta.fields, "history", "actions", "waiting_because"]
        read_only_fields = fields

    def get_waiting_because(self, item: WorkItem) -> str | None:
        if item.status != WorkItemStatus.WAITING:
            return None
        return explain_wait(item)


# --- Agent work ------------------------------------------------------------------------------


class DeclineSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class CloseSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class TransferSerializer(serializers.Serializer):
    """Where accepted work goes: a queue, a named agent, or anyone with a skill (in the item's
    queue, or in ``queue`` when given too)."""

    queue = serializers.PrimaryKeyRelatedField(
        queryset=Queue.objects.select_related("routing_config"),
        required=False,
        help_text=_("Id of the queue it waits in next."),
    )
    agent = serializers.PrimaryKeyRelatedField(
        queryset=Agent.objects.select_related("presence_config"),
        required=False,
        help_text=_(
            "Id of the agent offered it directly; they must be able to take it now (a member "
            "of its queue, online for its channel, with room)."
        ),
    )
    skill = serializers.PrimaryKeyRelatedField(
        queryset=Skill.objects.all(),
        required=False,
        help_text=_("Id of a skill: it waits for anyone who has it (at min_level or above)."),
    )
    min_level = level_field(required=False, default=Decimal("0"))
    note = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("Shown to the next agent with the work."),
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if "agent" in attrs and ("queue" in attrs or "skill" in attrs):
            raise serializers.ValidationError(
                {"agent": _("Transfer to an agent, or to a queue or skill, not both.")}
            )
        if not {"agent", "queue", "skill"} & attrs.keys():
            raise serializers.ValidationError(
                {"queue": _("Say where the work goes: a queue, an agent or a skill.")}
            )
        return attrs


class WorkPayloadSerializer(serializers.Serializer):
    """Documents ``routing.selectors.work_payload``: an offer or assignment as consoles see it."""

    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    state = serializers.CharField()
    subject = serializers.CharField()
    queue = serializers.CharField()
    queue_id = serializers.IntegerField()
    channel = serializers.CharField()
    channel_label = serializers.CharField()
    units = UnitsField()
    pushed_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    enqueued_at = serializers.DateTimeField()
    why = serializers.CharField()
    payload = serializers.DictField()
    priority = serializers.IntegerField()


# --- Rules and versions ----------------------------------------------------------------------


class ClassificationRuleSerializer(serializers.ModelSerializer):
    conditions = serializers.JSONField(
        required=False,
        help_text=_(
            'All must hold: [{"field": "payload.order_total", "op": "gt", "value": 100}]. '
            "Fields: channel, queue, subject, language, priority, secondary_priority, "
            "payload.<path>, bot.<key>, customer.<path>. Operators: eq, ne, gt, gte, lt, lte, "
            'in, not_in, contains, exists. {"any": [...]} holds when one alternative does.'
        ),
    )
    actions = serializers.JSONField(
        help_text=_(
            '{"queue": <id or name>, "priority": 1-10, "secondary_priority": 1-10, '
            '"skills": [{"skill": <id or name>, "min_level": 3}], "stop": true}; stored with '
            "ids."
        )
    )

    class Meta:
        model = ClassificationRule
        fields = ["id", "name", "position", "active", "queue", "conditions", "actions"]


class ExceptionRuleSerializer(serializers.ModelSerializer):
    actions = serializers.JSONField(
        help_text=_(
            '{"priority_by": 1-9} or {"priority_to": 1-10}, {"queue": <id or name>}, '
            '{"add_skills": [{"skill": "Senior"}]}, {"drop_skills": ["French"]}, '
            '{"notify": true}; stored with ids.'
        )
    )

    class Meta:
        model = ExceptionRule
        fields = ["id", "name", "position", "active", "queue", "trigger", "threshold", "actions"]


class ClassificationPreviewSerializer(serializers.Serializer):
    """A sample item: what the rules would do with it."""

    queue = serializers.CharField(help_text=_("The queue it arrives in: id or name."))
    channel = serializers.CharField(help_text=_("Its channel: key or id."))
    subject = serializers.CharField(max_length=255, required=False, allow_blank=True, default="")
    payload = serializers.DictField(required=False, default=dict)
    customer = serializers.DictField(
        required=False, default=dict, help_text=_("Customer attributes (customer.* fields).")
    )
    language = serializers.CharField(max_length=20, required=False, allow_blank=True, default="")
    priority = serializers.IntegerField(min_value=1, max_value=10, default=5)
    secondary_priority = serializers.IntegerField(min_value=1, max_value=10, default=5)

    def validate_queue(self, value: str) -> Any:
        return int(value) if value.strip().isdigit() else value

    def validate_channel(self, value: str) -> Any:
        return int(value) if value.strip().isdigit() else value


class _PreviewQueueSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class _PreviewSkillSerializer(serializers.Serializer):
    skill = serializers.IntegerField()
    name = serializers.CharField()
    min_level = serializers.CharField()
    additional = serializers.BooleanField()


class _PreviewMatchSerializer(serializers.Serializer):
    rule = serializers.IntegerField()
    name = serializers.CharField()
    position = serializers.IntegerField()
    because = serializers.ListField(child=serializers.CharField())
    changes = serializers.DictField()


class _PreviewSkipSerializer(serializers.Serializer):
    rule = serializers.IntegerField()
    name = serializers.CharField()
    error = serializers.CharField()


class ClassificationResultSerializer(serializers.Serializer):
    """Documents ``services.classification.explain``."""

    queue = _PreviewQueueSerializer()
    priority = serializers.IntegerField()
    secondary_priority = serializers.IntegerField()
    skills = _PreviewSkillSerializer(many=True)
    matched = _PreviewMatchSerializer(many=True)
    skipped = _PreviewSkipSerializer(many=True)
    stopped_by = serializers.IntegerField(allow_null=True)
    text = serializers.CharField()


class ClassifiedItemSerializer(serializers.Serializer):
    item = WorkItemSerializer()
    classification = ClassificationResultSerializer()


class VersionSerializer(serializers.Serializer):
    """Documents ``services.versions.versions``."""

    version = serializers.IntegerField()
    at = serializers.DateTimeField()
    by = serializers.CharField(allow_null=True)
    kind = serializers.ChoiceField(choices=["created", "changed", "deleted"])
    reason = serializers.CharField()
    changed = serializers.ListField(child=serializers.CharField())
    values = serializers.DictField()


class RollbackSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1)
    reason = serializers.CharField(max_length=80)
    skills = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text=_("Skills the item needs: name, min_level, additional."),
    )
    transfer = serializers.DictField(
        required=False,
        help_text=_("Who handed the work on and their note; absent unless someone did."),
    )
