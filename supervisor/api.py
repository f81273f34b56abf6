"""Supervisor API: the snapshot of the queues and agents a supervisor watches, trend history,
and supervisors' actions (presence, move, push)."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from presence.serializers import PresencePayloadSerializer
from routing.permissions import IsSupervisor
from routing.selectors import presence_payloads, work_payload
from routing.serializers import WorkPayloadSerializer
from routing.viewsets import validated
from supervisor import services
from supervisor.selectors import history, parse_since, snapshot


class _QueueSnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    waiting = serializers.IntegerField()
    offered = serializers.IntegerField()
    assigned = serializers.IntegerField()
    longest_wait_seconds = serializers.IntegerField()
    average_wait_seconds = serializers.IntegerField()


class _AgentSnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField()
    status_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    online = serializers.BooleanField()
    capacity = serializers.IntegerField()
    used_capacity = serializers.IntegerField()
    open_count = serializers.IntegerField()


class SnapshotSerializer(serializers.Serializer):
    """Documents the core of ``supervisor.selectors.snapshot``; the response carries more."""

    at = serializers.DateTimeField()
    queues = _QueueSnapshotSerializer(many=True)
    agents = _AgentSnapshotSerializer(many=True)


@extend_schema(tags=["supervisor"])
class SnapshotView(APIView):
    """Per queue: items waiting, longest and average wait (seconds); per agent: status, used and
    total capacity, open items. Supervisors see the queues they supervise and those queues'
    members; admins see everything."""

    permission_classes = [IsSupervisor]

    @extend_schema(responses=SnapshotSerializer)
    def get(self, request: Request) -> Response:
        return Response(snapshot(request.user, timezone.now()))


# --- History ---------------------------------------------------------------------------------


class _SampleSerializer(serializers.Serializer):
    at = serializers.DateTimeField()
    waiting = serializers.IntegerField()
    longest_wait_seconds = serializers.IntegerField()
    service_level_percent = serializers.FloatField(allow_null=True)


class _QueueSeriesSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    service_level_goal_percent = serializers.IntegerField()
    samples = _SampleSerializer(many=True)


class HistorySerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    interval_seconds = serializers.IntegerField()
    queues = _QueueSeriesSerializer(many=True)


class _HistoryQuerySerializer(serializers.Serializer):
    since = serializers.CharField(required=False, allow_blank=True)
    queue = serializers.IntegerField(required=False, min_value=1)


@extend_schema(tags=["supervisor"])
class HistoryView(APIView):
    """Trend samples (about one a minute per queue): items waiting, longest wait (seconds) and
    today's service level (percent, null before anything was answered or abandoned), from
    ``since`` (ISO 8601, default four hours ago, at most ``SUPERVISOR_HISTORY_MAX_HOURS`` back)
    until now, for the queues the user supervises or the one ``queue``."""

    permission_classes = [IsSupervisor]

    @extend_schema(
        parameters=[
            OpenApiParameter("since", OpenApiTypes.DATETIME, OpenApiParameter.QUERY),
            OpenApiParameter("queue", int, OpenApiParameter.QUERY),
        ],
        responses=HistorySerializer,
    )
    def get(self, request: Request) -> Response:
        query = validated(_HistoryQuerySerializer, request.query_params)
        now = timezone.now()
        since = parse_since(query.get("since"), now)
        return Response(history(request.user, since=since, now=now, queue_id=query.get("queue")))


# --- Actions ---------------------------------------------------------------------------------
# Each is allowed to admins and to supervisors of the queue concerned; anything outside the
# supervisor's queues answers 404 (a target queue they can see of but do not supervise, 403).
# The routing services record every action with its actor in the action log.


class PresenceActionSerializer(serializers.Serializer):
    status = serializers.IntegerField(
        allow_null=True, help_text=_("Presence status id; null sets the agent offline.")
    )


class MoveActionSerializer(serializers.Serializer):
    queue = serializers.IntegerField(help_text=_("Id of the queue to move the item to."))


class PushActionSerializer(serializers.Serializer):
    agent = serializers.IntegerField(help_text=_("Id of the agent to offer the item to."))


class _MovedItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.CharField()
    queue_id = serializers.IntegerField()
    queue = serializers.CharField()
    enqueued_at = serializers.DateTimeField()


@extend_schema(tags=["supervisor"])
class AgentPresenceActionView(APIView):
    """Set an agent's presence status (e.g. send an idle agent offline). Logged with who did it."""

    permission_classes = [IsSupervisor]

    @extend_schema(request=PresenceActionSerializer, responses=PresencePayloadSerializer)
    def post(self, request: Request, agent_id: int) -> Response:
        data = validated(PresenceActionSerializer, request.data)
        agent = services.supervisor_set_presence(
            actor=request.user, agent_id=agent_id, status_id=data["status"]
        )
        return Response(presence_payloads([agent.pk])[agent.pk])


@extend_schema(tags=["supervisor"])
class ItemMoveActionView(APIView):
    """Move a waiting (or offered) item to another queue you supervise; it keeps its age."""

    permission_classes = [IsSupervisor]

    @extend_schema(request=MoveActionSerializer, responses=_MovedItemSerializer)
    def post(self, request: Request, item_id: int) -> Response:
        data = validated(MoveActionSerializer, request.data)
        item = services.supervisor_move_item(
            actor=request.user, item_id=item_id, queue_id=data["queue"]
        )
        return Response(
            {
                "id": item.pk,
                "status": item.status,
                "queue_id": item.queue_id,
                "queue": item.queue.name,
                "enqueued_at": item.enqueued_at.isoformat(),
            }
        )


@extend_schema(tags=["supervisor"])
class ItemPushActionView(APIView):
    """Offer a waiting item to a chosen agent, past the routing model (capacity still holds)."""

    permission_classes = [IsSupervisor]

    @extend_schema(request=PushActionSerializer, responses=WorkPayloadSerializer)
    def post(self, request: Request, item_id: int) -> Response:
        data = validated(PushActionSerializer, request.data)
        work = services.supervisor_push_item(
            actor=request.user, item_id=item_id, agent_id=data["agent"]
        )
        return Response(work_payload(work))
