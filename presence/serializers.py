"""API shapes of presence: statuses, configurations, agents, and an agent's own presence."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model, password_validation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Field
from django.utils.translation import gettext_lazy as _
from rest_framework import serializers

from presence.models import Agent, DeclineReason, PresenceConfiguration, PresenceStatus
from routing.models import Queue, ServiceChannel
from routing.serializers import UnitsField

# --- Configuration ---------------------------------------------------------------------------


class PresenceStatusSerializer(serializers.ModelSerializer):
    channels = serializers.PrimaryKeyRelatedField(
        many=True,
        queryset=ServiceChannel.objects.all(),
        required=False,
        help_text=_("Ids of the service channels agents in this status receive work from."),
    )

    class Meta:
        model = PresenceStatus
        fields = ["id", "name", "is_online", "channels"]


class DeclineReasonSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeclineReason
        fields = ["id", "label", "active"]


class PresenceConfigurationSerializer(serializers.ModelSerializer):
    agents: serializers.PrimaryKeyRelatedField[Agent] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )

    class Meta:
        model = PresenceConfiguration
        fields = [
            "id",
            "name",
            "capacity",
            "auto_accept",
            "max_offers",
            "console_required",
            "allow_decline",
            "require_decline_reason",
            "decline_reasons",
            "allowed_statuses",
            "status_after_decline",
            "status_after_timeout",
            "agents",
        ]


class AgentSerializer(serializers.ModelSerializer):
    """An agent as admins see them: who, which configuration and queues, live state."""

    username = serializers.CharField(source="user.username", read_only=True)
    first_name = serializers.CharField(source="user.first_name", read_only=True)
    last_name = serializers.CharField(source="user.last_name", read_only=True)
    # Output only, and blank when the user has none: not validated as an address here.
    email = serializers.CharField(source="user.email", read_only=True)
    queues: serializers.PrimaryKeyRelatedField[Queue] = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True
    )
    status_name = serializers.CharField(source="status.name", read_only=True, default=None)
    capacity = UnitsField(help_text=_("Capacity in force (units): configured, or what is held."))
    used_capacity = UnitsField(help_text=_("Units held, exact to a hundredth."))

    class Meta:
        model = Agent
        fields = [
            "id",
            "user",
            "username",
            "first_name",
            "last_name",
            "email",
            "presence_config",
            "queues",
            "status",
            "status_name",
            "status_changed_at",
            "configured_capacity",
            "capacity",
            "used_capacity",
            "open_count",
            "last_assigned_at",
            "console_seen_at",
        ]
        read_only_fields = fields


class AgentUpdateSerializer(serializers.Serializer):
    first_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    last_name = serializers.CharField(max_length=150, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    presence_config = serializers.PrimaryKeyRelatedField(
        queryset=PresenceConfiguration.objects.all(), required=False
    )
    queues = serializers.PrimaryKeyRelatedField(
        many=True, queryset=Queue.objects.all(), required=False
    )


class AgentCreateSerializer(AgentUpdateSerializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(write_only=True, style={"input_type": "password"})
    presence_config = serializers.PrimaryKeyRelatedField(
        queryset=PresenceConfiguration.objects.all()
    )

    def validate_username(self, value: str) -> str:
        user_model = get_user_model()
        username_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        assert isinstance(username_field, Field)  # a column, never a relation
        try:
            username_field.run_validators(value)
        except DjangoValidationError as exc:
            raise serializers.ValidationError(exc.messages) from None
        if user_model.objects.filter(username=value).exists():
            raise serializers.ValidationError(_("A user with that username already exists."))
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        user = get_user_model()(
            username=attrs["username"],
            first_name=attrs.get("first_name", ""),
            last_name=attrs.get("last_name", ""),
            email=attrs.get("email", ""),
        )
        try:
            password_validation.validate_password(attrs["password"], user)
        except DjangoValidationError as exc:
            raise serializers.ValidationError({"password": exc.messages}) from None
        return attrs


# --- An agent's own presence ------------------------------------------------------------------


class MyPresenceSerializer(serializers.Serializer):
    status = serializers.PrimaryKeyRelatedField(
        queryset=PresenceStatus.objects.all(),
        allow_null=True,
        help_text=_("Id of a status your presence configuration allows, or null for offline."),
    )


class PresencePayloadSerializer(serializers.Serializer):
    """Documents ``routing.selectors.presence_payloads``: an agent's status and load."""

    agent_id = serializers.IntegerField()
    status_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    online = serializers.BooleanField()
    status_since = serializers.DateTimeField(allow_null=True)
    capacity = UnitsField()
    used_capacity = UnitsField()
    open_count = serializers.IntegerField()


class StatusChoiceSerializer(serializers.Serializer):
    """Documents ``presence.selectors.status_choices``: a status an agent may pick."""

    id = serializers.IntegerField(allow_null=True, help_text=_("null is offline."))
    name = serializers.CharField()
    online = serializers.BooleanField()
    channels = serializers.ListField(child=serializers.CharField())
