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

from omnirouter.errors import NotFound
from omnirouter.permissions import (
    AdminWritesAnyRoleReads,
    IsAgent,
    IsAgentOrSupervisor,
    IsIntake,
    IsIntakeOrSupervisor,
    IsSupervisor,
)
from omnirouter.ratelimit import RoleRateThrottle, WorkItemCreateThrottle
from omnirouter.roles import is_admin, signed_in
from omnirouter.viewsets import ConfigurationViewSet, split_m2m, validated
from routing import services
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
)
from routing.selectors import (
    agents_in_scope,
    caller_agent,
    visible_agent_skills,
    visible_work_items,
    work_payload,
)
from routing.serializers import (
    AgentSkillFilterSerializer,
    AgentSkillSerializer,
    AgentSkillUpdateSerializer,
    ClassificationPreviewSerializer,
    ClassificationResultSerializer,
    ClassificationRuleSerializer,
    ClassifiedItemSerializer,
    CloseSerializer,
    DeclineSerializer,
    ExceptionRuleSerializer,
    QueueNameSerializer,
    QueueSerializer,
    RollbackSerializer,
    RoutingConfigurationSerializer,
    ServiceChannelNameSerializer,
    ServiceChannelSerializer,
    SkillSerializer,
    TransferSerializer,
    VersionSerializer,
    WorkItemCreateSerializer,
    WorkItemDetailSerializer,
    WorkItemFilterSerializer,
    WorkItemSerializer,
    WorkPayloadSerializer,
)

# --- Configuration (admins) ------------------------------------------------------------------


class _NamesForOtherRoles(ConfigurationViewSet):
    """Admins read and write the whole record; agents, intake clients and supervisors read
    its names only (``name_serializer_class``): what they post to or transfer to."""

    permission_classes = [AdminWritesAnyRoleReads]
    name_serializer_class: type[serializers.BaseSerializer]

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.request is not None and not is_admin(self.request.user):
            return self.name_serializer_class
        return super().get_serializer_class()


@extend_schema(tags=["configuration"])
class ServiceChannelViewSet(_NamesForOtherRoles):
    """Service channels: the kinds of work, each with a default size. Other roles than admins
    read id, key and label."""

    queryset = ServiceChannel.objects.all()
    serializer_class = ServiceChannelSerializer
    name_serializer_class = ServiceChannelNameSerializer


class VersionedMixin:
    """``versions`` and ``rollback`` for a configuration viewset whose model keeps history;
    a rollback saves through the viewset's ``update_object`` (the record's own service)."""

    @extend_schema(request=None, responses=VersionSerializer(many=True))
    @action(detail=True, methods=["get"])
    def versions(self, request: Request, pk: str) -> Response:
        """Every saved version, newest first: when, by whom, why, what changed."""
        return Response(services.versions(self.get_object()))  # type: ignore[attr-defined]

    @extend_schema(request=RollbackSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request: Request, pk: str) -> Response:
        """Restore the values of one version (a new version, with the reason given)."""
        data = validated(RollbackSerializer, request.data)
        view: Any = self
        instance = services.roll_back(
            instance=view.get_object(),
            version=data["version"],
            reason=data["reason"],
            actor=signed_in(request.user),
            save=view.update_object,
        )
        return Response(view.get_serializer(instance).data)


@extend_schema(tags=["configuration"])
class RoutingConfigurationViewSet(VersionedMixin, ConfigurationViewSet):
    """Routing configurations. A new routing priority applies to the live items of its queues."""

    queryset = RoutingConfiguration.objects.prefetch_related("queues")
    serializer_class = RoutingConfigurationSerializer

    def create_object(self, instance: Any, data: dict[str, Any]) -> Any:
        services.stamp_version(instance, self.request.user)
        return super().create_object(instance, data)

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        services.stamp_version(instance, self.request.user)
        return services.update_routing_config(config=instance, changes=data)


@extend_schema(tags=["rules"])
class ClassificationRuleViewSet(VersionedMixin, ConfigurationViewSet):
    """Classification rules: run in position order on each new item (and on demand), they set
    its queue, priorities and skills. Refusals name the problem (400)."""

    queryset = ClassificationRule.objects.all()
    serializer_class = ClassificationRuleSerializer

    def create_object(self, instance: Any, data: dict[str, Any]) -> Any:
        return services.save_classification_rule(
            rule=instance, changes=data, actor=signed_in(self.request.user)
        )

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        return self.create_object(instance, data)

    @extend_schema(
        request=ClassificationPreviewSerializer, responses=ClassificationResultSerializer
    )
    @action(detail=False, methods=["post"])
    def preview(self, request: Request) -> Response:
        """What the active rules would do with a sample item, and why; nothing is written."""
        data = validated(ClassificationPreviewSerializer, request.data)
        return Response(services.preview_classification(**data))


@extend_schema(tags=["rules"])
class ExceptionRuleViewSet(VersionedMixin, ConfigurationViewSet):
    """Exception rules: items that waited too long, in a queue too long, or with nobody online
    get a higher priority, another queue, other skills, and their supervisors are told."""

    queryset = ExceptionRule.objects.all()
    serializer_class = ExceptionRuleSerializer

    def create_object(self, instance: Any, data: dict[str, Any]) -> Any:
        return services.save_exception_rule(
            rule=instance, changes=data, actor=signed_in(self.request.user)
        )

    def update_object(self, instance: Any, data: dict[str, Any]) -> Any:
        return self.create_object(instance, data)


@extend_schema(tags=["configuration"])
class QueueViewSet(_NamesForOtherRoles):
    """Queues with their member agents and supervisors (ids, writable). Other roles than
    admins read id and name only."""

    queryset = Queue.objects.select_related("routing_config").prefetch_related(
        "members", "supervisors"
    )
    serializer_class = QueueSerializer
    name_serializer_class = QueueNameSerializer

    def get_queryset(self) -> QuerySet[Queue]:
        if is_admin(self.request.user):
            return super().get_queryset()
        return Queue.objects.all()

    def create_object(self, instance: Any, data: dict[str, Any]) -> Any:
        plain, m2m = split_m2m(Queue, data)
        return services.save_queue(
            queue=instance,
            changes=plain,
            members=m2m.get("members"),
            supervisors=m2m.get("supervisors"),
        )


@extend_schema(tags=["configuration"])
class SkillViewSet(ConfigurationViewSet):
    """Skills agents have and work needs. Every role reads them; admins change them. A skill
    that agents have or items need cannot be deleted (409 saying what uses it)."""

    permission_classes = [AdminWritesAnyRoleReads]
    queryset = Skill.objects.all()
    serializer_class = SkillSerializer


@extend_schema(
    tags=["configuration"],
    parameters=[
        OpenApiParameter("id", int, OpenApiParameter.PATH, description=_("Agent skill id."))
    ],
)
class AgentSkillViewSet(viewsets.ModelViewSet):
    """Agents' skills and levels (0-99.99). Admins read and change everyone's; supervisors
    those of the agents in their queues; an agent reads their own. Every change is logged with
    who made it, and may let the agent take waiting work at once."""

    serializer_class = AgentSkillSerializer
    lookup_value_regex = r"\d+"

    def get_permissions(self) -> list[Any]:
        if self.request is not None and self.request.method in ("GET", "HEAD", "OPTIONS"):
            return [IsAgentOrSupervisor()]
        return [IsSupervisor()]

    def get_queryset(self) -> QuerySet[AgentSkill]:
        return visible_agent_skills(self.request.user).order_by("agent_id", "skill__name", "id")

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action in ("update", "partial_update"):
            return AgentSkillUpdateSerializer
        return AgentSkillSerializer

    @extend_schema(parameters=[AgentSkillFilterSerializer])
    def list(self, request: Request) -> Response:
        filters = validated(AgentSkillFilterSerializer, request.query_params)
        rows = self.get_queryset()
        if "agent" in filters:
            rows = rows.filter(agent_id=filters["agent"])
        page = self.paginate_queryset(rows)
        return self.get_paginated_response(AgentSkillSerializer(page, many=True).data)

    @extend_schema(request=AgentSkillSerializer, responses={201: AgentSkillSerializer})
    def create(self, request: Request) -> Response:
        data = validated(AgentSkillSerializer, request.data)
        agent = agents_in_scope(request.user).filter(pk=data["agent"].pk).first()
        if agent is None:
            raise NotFound(
                _("No agent %(id)s in a queue you supervise.") % {"id": data["agent"].pk},
                "not_found",
            )
        row = services.set_agent_skill(
            agent=agent,
            skill=data["skill"],
            level=data["level"],
            actor=signed_in(request.user),
            create_only=True,
        )
        return Response(AgentSkillSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=AgentSkillUpdateSerializer, responses=AgentSkillSerializer)
    def update(self, request: Request, pk: str, partial: bool = False) -> Response:
        row = self._own_scope_row()
        data = validated(AgentSkillUpdateSerializer, request.data)
        row = services.set_agent_skill(
            agent=row.agent, skill=row.skill, level=data["level"], actor=signed_in(request.user)
        )
        return Response(AgentSkillSerializer(row).data)

    @extend_schema(request=AgentSkillUpdateSerializer, responses=AgentSkillSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        return self.update(request, pk, partial=True)

    def destroy(self, request: Request, pk: str) -> Response:
        services.remove_agent_skill(
            agent_skill=self._own_scope_row(), actor=signed_in(request.user)
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _own_scope_row(self) -> AgentSkill:
        # Writes: only rows of agents the caller may change (an agent reading their own skills
        # is not a supervisor of theirs); others answer 404 like no row.
        row = self.get_object()
        if not agents_in_scope(self.request.user).filter(pk=row.agent_id).exists():
            raise NotFound(_("No agent skill %(id)s you may change.") % {"id": row.pk}, "not_found")
        return row


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
        if self.action == "classify":
            return [IsSupervisor()]
        return [IsIntakeOrSupervisor()]

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        # The browsable API draws its POST form on the list page from this.
        if self.request is not None and self.request.method == "POST":
            return WorkItemCreateSerializer
        return WorkItemSerializer

    def get_queryset(self) -> QuerySet[WorkItem]:
        items = (
            visible_work_items(self.request.user)
            .select_related("queue", "channel", "preferred_agent__user")
            .prefetch_related(
                Prefetch("skills", queryset=ItemSkill.objects.select_related("skill"))
            )
        )
        if self.action == "retrieve":
            items = items.prefetch_related(
                Prefetch(
                    "agent_works",
                    queryset=AgentWork.objects.select_related("agent__user", "queue").order_by(
                        "pushed_at", "id"
                    ),
                ),
                Prefetch(
                    "actions",
                    queryset=ActionLog.objects.select_related("actor").order_by("at", "id"),
                ),
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

    @extend_schema(request=None, responses=ClassifiedItemSerializer)
    @action(detail=True, methods=["post"])
    def classify(self, request: Request, pk: str) -> Response:
        """Run the classification rules again on a waiting item (in a queue you supervise) and
        apply what they decide; the firing is recorded on the item's history."""
        before = self.get_object()
        item, outcome = services.classify_item(item_id=before.pk, actor=signed_in(request.user))
        explained = services.explain_classification(
            outcome,
            start_queue=before.queue,
            priority=before.priority,
            secondary_priority=before.secondary_priority,
            applied=True,
        )
        return Response({"item": WorkItemSerializer(item).data, "classification": explained})


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
        """Hand accepted work on, with a note the next agent sees: to another queue (``queue``),
        where it waits to be routed afresh; to a named agent (``agent``), offered to them
        directly - 409 with the reason when they cannot take it now; or to anyone with a skill
        (``skill``, ``min_level``), waiting in its queue (or ``queue``) with that skill
        required."""
        data = validated(TransferSerializer, request.data)
        me = caller_agent(request.user)
        if "agent" in data:
            work = services.transfer_work_to_agent(
                work_id=int(pk), agent=me, to_agent=data["agent"], note=data["note"]
            )
        elif "skill" in data:
            work = services.transfer_work_to_skill(
                work_id=int(pk),
                agent=me,
                skill=data["skill"],
                min_level=data["min_level"],
                queue=data.get("queue"),
                note=data["note"],
            )
        else:
            work = services.transfer_work(
                work_id=int(pk), agent=me, queue=data["queue"], note=data["note"]
            )
        return Response(work_payload(work))
