"""Routing API: configuration (admins), intake of work items, agents' actions on their work.

Views are thin: an input serializer validates, one service acts, an output serializer renders.
Refusals of the routing rules (``DomainError`` and its kinds) become 400/403/404/409 with a
message in ``omnirouter.api_errors``.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from omnirouter.permissions import IsAgent, IsIntake, IsIntakeOrSupervisor
from omnirouter.ratelimit import RoleRateThrottle, WorkItemCreateThrottle
from omnirouter.roles import signed_in
from omnirouter.viewsets import ConfigurationViewSet, split_m2m, validated
from routing import services
from routing.models import AgentWork, Queue, RoutingConfiguration, ServiceChannel, WorkItem
from routing.selectors import caller_agent, visible_work_items, work_payload
from routing.serializers import (
    CloseSerializer,
    DeclineSerializer,
    QueueSerializer,
    RoutingConfigurationSerializer,
    ServiceChannelSerializer,
    TransferSerializer,
    WorkItemCreateSerializer,
    WorkItemDetailSerializer,
    WorkItemFilterSerializer,
    WorkItemSerializer,
    WorkPayloadSerializer,
)

# --- Configuration (admins) ------------------------------------------------------------------


@extend_schema(tags=["configuration"])
class ServiceChannelViewSet(ConfigurationViewSet):
    """Service channels: the kinds of work, each with a default size."""

    queryset = ServiceChannel.objects.all()
    serializer_class = ServiceChannelSerializer


@extend_schema(tags=["configuration"])
class RoutingConfigurationViewSet(ConfigurationViewSet):
    """Routing configurations. A new routing priority applies to the live items of its queues."""

    queryset = RoutingConfiguration.objects.prefetch_related("queues")
    serializer_class = RoutingConfigurationSerializer

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        return services.update_routing_config(config=instance, changes=data)


@extend_schema(tags=["configuration"])
class QueueViewSet(ConfigurationViewSet):
    """Queues with their member agents and supervisors (ids, writable)."""

    queryset = Queue.objects.select_related("routing_config").prefetch_related(
        "members", "supervisors"
    )
    serializer_class = QueueSerializer

    def create_object(self, instance: Any, data: dict[str, Any]) -> Any:
        plain, m2m = split_m2m(Queue, data)
        return services.save_queue(
            queue=instance,
            changes=plain,
            members=m2m.get("members"),
            supervisors=m2m.get("supervisors"),
        )


# --- Intake ----------------------------------------------------------------------------------


@extend_schema(tags=["work items"])
class WorkItemViewSet(viewsets.GenericViewSet):
    """Work items: intake clients create them and read their own; supervisors read and cancel
    those in their queues; admins all."""

    serializer_class = WorkItemSerializer
    throttle_classes = [RoleRateThrottle, WorkItemCreateThrottle]

    def get_permissions(self) -> list[Any]:
        if self.action == "create":
            return [IsIntake()]
        return [IsIntakeOrSupervisor()]

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        # The browsable API draws its POST form on the list page from this.
        if self.request is not None and self.request.method == "POST":
            return WorkItemCreateSerializer
        return WorkItemSerializer

    def get_queryset(self) -> QuerySet[WorkItem]:
        items = visible_work_items(self.request.user).select_related(
            "queue", "channel", "preferred_agent__user"
        )
        if self.action == "retrieve":
            items = items.prefetch_related(
                Prefetch(
                    "agent_works",
                    queryset=AgentWork.objects.select_related("agent__user", "queue").order_by(
                        "pushed_at", "id"
                    ),
                )
            )
        return items

    @extend_schema(
        request=WorkItemCreateSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description=_(
                    "A unique key per new item (a UUID), 1 to 255 visible ASCII characters. "
                    "Resending the same request with the same key (after a timeout, a lost "
                    "answer) returns the item the first request created, with the same status "
                    "and body, and creates nothing. The same key with a different body answers "
                    "422. Keys are remembered per client for "
                    "ROUTING_IDEMPOTENCY_KEY_RETENTION_HOURS (24 by default)."
                ),
            )
        ],
        responses={
            201: WorkItemSerializer,
            422: OpenApiResponse(
                description=_("The Idempotency-Key was already used with a different body.")
            ),
        },
    )
    def create(self, request: Request) -> Response:
        data = validated(WorkItemCreateSerializer, request.data)
        key = request.headers.get("Idempotency-Key")
        if key is None:
            item = services.enqueue_work(**data, created_by=signed_in(request.user))
            return Response(WorkItemSerializer(item).data, status=status.HTTP_201_CREATED)
        answer = services.enqueue_work_once(
            client=signed_in(request.user),
            key=key,
            request_data=_plain(request.data),
            respond=lambda item: (status.HTTP_201_CREATED, WorkItemSerializer(item).data),
            **data,
        )
        return Response(answer.body, status=answer.status)

    @extend_schema(parameters=[WorkItemFilterSerializer], responses=WorkItemSerializer(many=True))
    def list(self, request: Request) -> Response:
        filters = validated(WorkItemFilterSerializer, request.query_params)
        items = self.get_queryset().order_by("-id")
        if "status" in filters:
            items = items.filter(status=filters["status"])
        if "queue" in filters:
            items = items.filter(queue_id=filters["queue"])
        page = self.paginate_queryset(items)
        return self.get_paginated_response(WorkItemSerializer(page, many=True).data)

    @extend_schema(responses=WorkItemDetailSerializer)
    def retrieve(self, request: Request, pk: str) -> Response:
        return Response(WorkItemDetailSerializer(self.get_object()).data)

    @extend_schema(request=None, responses=WorkItemSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        """Cancel a waiting or offered item (a pending offer is withdrawn)."""
        item = services.cancel_work_item(item_id=self.get_object().pk)
        return Response(WorkItemSerializer(item).data)


def _plain(data: Any) -> dict[str, Any]:
    """The request body as plain data (a form's QueryDict as lists) for the key's fingerprint."""
    if hasattr(data, "lists"):
        return {k: v if len(v) > 1 else v[0] for k, v in data.lists()}
    return dict(data)


# --- Agents' actions on their work ------------------------------------------------------------


@extend_schema(
    tags=["agent"],
    responses=WorkPayloadSerializer,
    parameters=[
        OpenApiParameter("id", int, OpenApiParameter.PATH, description=_("Agent work id."))
    ],
)
class AgentWorkViewSet(viewsets.GenericViewSet):
    """An agent's own offers and assignments. Someone else's work answers 404, like no work."""

    permission_classes = [IsAgent]
    # Only for the schema's path parameter: the services look the work up and check it is yours.
    queryset = AgentWork.objects.none()
    lookup_value_regex = r"\d+"
    input_serializers: dict[str, type[serializers.BaseSerializer]] = {
        "decline": DeclineSerializer,
        "close": CloseSerializer,
        "transfer": TransferSerializer,
    }

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        # Only the browsable API asks: it draws each action's form from it.
        return self.input_serializers.get(self.action or "", serializers.Serializer)

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str) -> Response:
        """Accept a pushed offer; an expired or already accepted offer answers 409."""
        work = services.accept_work(work_id=int(pk), agent=caller_agent(request.user))
        return Response(work_payload(work))

    @extend_schema(request=DeclineSerializer)
    @action(detail=True, methods=["post"])
    def decline(self, request: Request, pk: str) -> Response:
        """Decline a pushed offer, with a reason when the presence configuration asks for one."""
        data = validated(DeclineSerializer, request.data)
        work = services.decline_work(
            work_id=int(pk), agent=caller_agent(request.user), reason=data["reason"]
        )
        return Response(work_payload(work))

    @extend_schema(request=CloseSerializer)
    @action(detail=True, methods=["post"])
    def close(self, request: Request, pk: str) -> Response:
        """Close accepted work; its capacity is freed."""
        data = validated(CloseSerializer, request.data)
        work = services.close_work(
            work_id=int(pk), agent=caller_agent(request.user), note=data["note"]
        )
        return Response(work_payload(work))

    @extend_schema(request=TransferSerializer)
    @action(detail=True, methods=["post"])
    def transfer(self, request: Request, pk: str) -> Response:
        """Hand accepted work to another queue, where it waits to be routed afresh."""
        data = validated(TransferSerializer, request.data)
        work = services.transfer_work(
            work_id=int(pk),
            agent=caller_agent(request.user),
            queue=data["queue"],
            note=data["note"],
        )
        return Response(work_payload(work))
