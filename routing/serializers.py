"""API shapes of routing: configuration records, work items and agent work.

Input serializers only validate; the views hand ``validated_data`` to one service. Output
serializers render what the services return.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from presence.models import Agent
from routing.models import (
    AgentSkill,
    AgentWork,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    Skill,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import explain_wait

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


class WorkItemSerializer(serializers.ModelSerializer):
    queue_name = serializers.CharField(source="queue.name", read_only=True)
    channel_key = serializers.CharField(source="channel.key", read_only=True)
    size = SizeSerializer(source="*", read_only=True)

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
            "created_at",
            "enqueued_at",
            "ended_at",
        ]
        read_only_fields = fields


class AgentWorkHistorySerializer(serializers.ModelSerializer):
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


class WorkItemDetailSerializer(WorkItemSerializer):
    history = AgentWorkHistorySerializer(source="agent_works", many=True, read_only=True)
    waiting_because = serializers.SerializerMethodField(
        help_text=_("Why the item still waits; empty unless it is waiting.")
    )

    class Meta(WorkItemSerializer.Meta):
        fields = [*WorkItemSerializer.Meta.fields, "history", "waiting_because"]
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
    units = serializers.IntegerField()
    pushed_at = serializers.DateTimeField()
    expires_at = serializers.DateTimeField(allow_null=True)
    opened_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    enqueued_at = serializers.DateTimeField()
    why = serializers.CharField()
    payload = serializers.DictField()
    priority = serializers.IntegerField()
    skills = serializers.ListField(
        child=serializers.DictField(),
        required=False,
        help_text=_("Skills the item needs: name, min_level, additional."),
    )
    transfer = serializers.DictField(
        required=False,
        help_text=_("Who handed the work on and their note; absent unless someone did."),
    )
