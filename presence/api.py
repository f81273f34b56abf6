"""Presence API: statuses, presence configurations and agents (admins); an agent's own presence,
statuses and work (agents).

Views are thin: an input serializer validates, one service acts, an output serializer renders.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omnirouter.permissions import AdminWritesStaffReads, IsAdmin, IsAgent
from omnirouter.roles import signed_in
from omnirouter.viewsets import ConfigurationViewSet, split_m2m, validated
from presence import services as presence_services
from presence.models import Agent, DeclineReason, PresenceConfiguration, PresenceStatus
from presence.selectors import status_choices
from presence.serializers import (
    AgentCreateSerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    DeclineReasonSerializer,
    MyPresenceSerializer,
    PresenceConfigurationSerializer,
    PresencePayloadSerializer,
    PresenceStatusSerializer,
    StatusChoiceSerializer,
)
from routing import services as routing_services
from routing.selectors import caller_agent, live_work_for_agent, presence_payloads, work_payload
from routing.serializers import WorkPayloadSerializer

# --- Configuration (admins) ------------------------------------------------------------------


@extend_schema(tags=["configuration"])
class PresenceStatusViewSet(ConfigurationViewSet):
    """Presence statuses with the channels they cover. Narrowing a status returns the offers its
    agents may no longer hold to their queues."""

    queryset = PresenceStatus.objects.prefetch_related("channels")
    serializer_class = PresenceStatusSerializer

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        plain, m2m = split_m2m(PresenceStatus, data)
        return routing_services.update_presence_status(
            status=instance, changes=plain, channels=m2m.get("channels")
        )


@extend_schema(tags=["configuration"])
class DeclineReasonViewSet(ConfigurationViewSet):
    """Reasons agents give for declining. Agents and supervisors read them; admins change them.
    One a presence configuration lists cannot be deleted (409 naming it): deactivate it."""

    permission_classes = [AdminWritesStaffReads]
    queryset = DeclineReason.objects.all()
    serializer_class = DeclineReasonSerializer


@extend_schema(tags=["configuration"])
class PresenceConfigurationViewSet(ConfigurationViewSet):
    """Presence configurations. A new capacity applies to their agents at once."""

    queryset = PresenceConfiguration.objects.prefetch_related(
        "agents", "decline_reasons", "allowed_statuses"
    )
    serializer_class = PresenceConfigurationSerializer

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        plain, m2m = split_m2m(PresenceConfiguration, data)
        return presence_services.update_presence_config(config=instance, changes=plain, m2m=m2m)


@extend_schema(tags=["configuration"])
class AgentViewSet(viewsets.ModelViewSet):
    """Agents: created with their user; edited for names, presence configuration and queues.
    Agents are not deleted through the API: their work history refers to them."""

    permission_classes = [IsAdmin]
    queryset = Agent.objects.select_related("user", "status").prefetch_related("queues")
    serializer_class = AgentSerializer
    http_method_names = ["get", "post", "put", "patch", "head", "options"]

    @extend_schema(request=AgentCreateSerializer, responses={201: AgentSerializer})
    def create(self, request: Request) -> Response:
        data = validated(AgentCreateSerializer, request.data)
        agent = presence_services.create_agent(
            username=data["username"],
            password=data["password"],
            presence_config=data["presence_config"],
            queues=data.get("queues", []),
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
            email=data.get("email", ""),
        )
        return Response(AgentSerializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentUpdateSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        # PUT and PATCH alike: every field is optional, only those given change.
        data = validated(AgentUpdateSerializer, request.data)
        user_changes: dict[str, Any] = {
            k: data.pop(k) for k in ("first_name", "last_name", "email") if k in data
        }
        agent = presence_services.update_agent(
            agent=self.get_object(),
            presence_config=data.get("presence_config"),
            queues=data.get("queues"),
            user_changes=user_changes,
        )
        return Response(AgentSerializer(agent).data)

    @extend_schema(request=AgentUpdateSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)


# --- The agent's own presence and work --------------------------------------------------------


def _me(request: Request) -> Agent:
    return caller_agent(request.user)


@extend_schema(tags=["agent"])
class MyPresenceView(APIView):
    """Your presence: status and load. PUT a status id, or null to go offline."""

    permission_classes = [IsAgent]

    @extend_schema(responses=PresencePayloadSerializer)
    def get(self, request: Request) -> Response:
        agent = _me(request)
        return Response(presence_payloads([agent.pk])[agent.pk])

    @extend_schema(request=MyPresenceSerializer, responses=PresencePayloadSerializer)
    def put(self, request: Request) -> Response:
        data = validated(MyPresenceSerializer, request.data)
        agent = routing_services.set_presence(
            agent=_me(request), status=data["status"], actor=signed_in(request.user)
        )
        return Response(presence_payloads([agent.pk])[agent.pk])


@extend_schema(tags=["agent"])
class MyWorkView(APIView):
    """Your pending offers and open work, oldest first."""

    permission_classes = [IsAgent]

    @extend_schema(responses=WorkPayloadSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response([work_payload(work) for work in live_work_for_agent(_me(request))])


@extend_schema(tags=["agent"])
class MyStatusesView(APIView):
    """The statuses your presence configuration lets you pick (id null is offline)."""

    permission_classes = [IsAgent]

    @extend_schema(responses=StatusChoiceSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(status_choices(_me(request).presence_config))
