"""API shapes of routing: configuration records, work items and agent work.

Input serializers only validate; the views hand ``validated_data`` to one service. Output
serializers render what the services return.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from presence.models import Agent
from routing import engine
from routing.models import (
    AgentWork,
    Queue,
    RoutingConfiguration,
    ServiceChannel,
    WorkItem,
    WorkItemStatus,
)
from routing.selectors import explain_wait


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


class WorkItemSerializer(serializers.ModelSerializer):
    queue_name = serializers.CharField(source="queue.name", read_only=True)
    channel_key = serializers.CharField(source="channel.key", read_only=True)
    size = SizeSerializer(source="*", read_only=True)
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
            "preferred_agent",
            "preferred_agent_username",
            "preferred_until",
            "created_at",
            "enqueued_at",
            "ended_at",
        ]
        read_only_fields = fields


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
    queue = serializers.PrimaryKeyRelatedField(
        queryset=Queue.objects.select_related("routing_config")
    )
    note = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


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
