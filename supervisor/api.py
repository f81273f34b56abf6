"""Supervisor API: the snapshot of the queues and agents a supervisor watches, trend history,
and supervisors' actions (presence, move, push)."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omnirouter.permissions import IsSupervisor
from omnirouter.viewsets import validated
from presence.serializers import PresencePayloadSerializer
from routing.selectors import presence_payloads, work_payload
from routing.serializers import UnitsField, WorkPayloadSerializer
from supervisor import services
from supervisor.selectors import history, parse_since, push_choices, snapshot


def _seconds(help_text: Any = "") -> serializers.IntegerField:
    return serializers.IntegerField(allow_null=True, help_text=help_text)


class _QueueSnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    waiting = serializers.IntegerField()
    offered = serializers.IntegerField()
    assigned = serializers.IntegerField()
    oldest_enqueued_at = serializers.DateTimeField(allow_null=True)
    longest_wait_seconds = serializers.IntegerField()
    average_wait_seconds = serializers.IntegerField()
    answered_today = serializers.IntegerField()
    answered_within_target_today = serializers.IntegerField()
    average_speed_to_answer_seconds = _seconds(
        _("From entering the queue to acceptance, over items accepted today.")
    )
    handled_today = serializers.IntegerField()
    average_handle_seconds = _seconds(_("From acceptance to close, over work closed today."))
    abandoned_today = serializers.IntegerField()
    abandoned_after_target_today = serializers.IntegerField()
    service_level_percent = serializers.FloatField(
        allow_null=True,
        help_text=_("Accepted within target / (accepted + abandoned after target), today."),
    )
    service_level_target_seconds = serializers.IntegerField()
    service_level_goal_percent = serializers.IntegerField()
    service_level_met = serializers.BooleanField(allow_null=True)


class _OpenItemSerializer(serializers.Serializer):
    work_id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    subject = serializers.CharField()
    queue = serializers.CharField()
    state = serializers.CharField()
    state_label = serializers.CharField()
    seconds_in_state = serializers.IntegerField()


class _AgentSkillRowSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text=_("The agent skill's id (/api/agent-skills/{id}/)."))
    skill_id = serializers.IntegerField()
    name = serializers.CharField()
    level = serializers.DecimalField(max_digits=4, decimal_places=2)


class _SkillBacklogSerializer(serializers.Serializer):
    skill_id = serializers.IntegerField()
    name = serializers.CharField()
    waiting = serializers.IntegerField()
    longest_wait_seconds = serializers.IntegerField()
    agents_online = serializers.IntegerField(
        help_text=_("Members of your queues online with the skill, at any level.")
    )
    nobody_online_can_take = serializers.IntegerField(
        help_text=_(
            "Waiting items that no member of their queue online for their channel has the "
            "skill for, at the level asked."
        )
    )


class _AgentSnapshotSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.CharField()
    status_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField(allow_null=True)
    online = serializers.BooleanField()
    connected = serializers.BooleanField()
    status_since = serializers.DateTimeField(allow_null=True)
    seconds_in_status = _seconds()
    capacity = UnitsField()
    used_capacity = UnitsField()
    spare_capacity = UnitsField()
    open_count = serializers.IntegerField()
    has_room = serializers.BooleanField(
        help_text=_("Online for a channel, connected (or no console needed), spare capacity.")
    )
    queue_ids = serializers.ListField(child=serializers.IntegerField())
    open_items = _OpenItemSerializer(many=True)
    handled_today = serializers.IntegerField()
    declined_today = serializers.IntegerField()
    timed_out_today = serializers.IntegerField()
    average_handle_seconds = _seconds()
    last_assigned_at = serializers.DateTimeField(allow_null=True)
    skills = _AgentSkillRowSerializer(many=True)


class _LiveWorkSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    subject = serializers.CharField()
    priority = serializers.IntegerField()
    agent_id = serializers.IntegerField()
    agent = serializers.CharField()
    queue_id = serializers.IntegerField()
    queue = serializers.CharField()
    channel = serializers.CharField()
    channel_label = serializers.CharField()
    state = serializers.CharField()
    state_label = serializers.CharField()
    units = UnitsField()
    state_since = serializers.DateTimeField()
    seconds_in_state = serializers.IntegerField()
    expires_at = serializers.DateTimeField(allow_null=True)
    enqueued_at = serializers.DateTimeField()
    why = serializers.CharField(help_text=_("Why the router chose this agent."))
    auto_accepted = serializers.BooleanField()


class _WaitingItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    subject = serializers.CharField()
    priority = serializers.IntegerField()
    queue_id = serializers.IntegerField()
    queue = serializers.CharField()
    channel = serializers.CharField()
    channel_label = serializers.CharField()
    enqueued_at = serializers.DateTimeField()
    wait_seconds = serializers.IntegerField()


class _TotalsSerializer(serializers.Serializer):
    waiting = serializers.IntegerField()
    offered = serializers.IntegerField()
    assigned = serializers.IntegerField()
    longest_wait_seconds = serializers.IntegerField()
    handled_today = serializers.IntegerField()
    abandoned_today = serializers.IntegerField()
    service_level_percent = serializers.FloatField(allow_null=True)
    agents_online = serializers.IntegerField()
    agents_with_room = serializers.IntegerField()


class SnapshotSerializer(serializers.Serializer):
    """``supervisor.selectors.snapshot``; definitions in that module's docstring."""

    at = serializers.DateTimeField()
    day_start = serializers.DateTimeField()
    timezone = serializers.CharField()
    queues = _QueueSnapshotSerializer(many=True)
    totals = _TotalsSerializer()
    agents = _AgentSnapshotSerializer(many=True)
    work = _LiveWorkSerializer(many=True)
    work_total = serializers.IntegerField()
    next_in_line = _WaitingItemSerializer(many=True)
    skills_backlog = _SkillBacklogSerializer(many=True)


@extend_schema(tags=["supervisor"])
class SnapshotView(APIView):
    """The center now, as the dashboard shows it: per queue backlog, waits, speed to answer,
    handled, abandoned and service level against goal; per agent status, time in status, load,
    open items and today's figures; every live offer and assignment with why; the next waiting
    items. Supervisors see the queues they supervise and those queues' members; admins see
    everything. Durations are whole seconds; "today" starts at midnight in TIME_ZONE."""

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


class TransferActionSerializer(serializers.Serializer):
    agent = serializers.IntegerField(help_text=_("Id of the agent to hand the work to."))
    note = serializers.CharField(
        max_length=2000,
        required=False,
        allow_blank=True,
        default="",
        help_text=_("Shown to the next agent with the work."),
    )


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


class _PushChoiceSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    used_capacity = UnitsField()
    capacity = UnitsField()
    can_push = serializers.BooleanField(help_text=_("A push to this agent would be accepted."))
    routable = serializers.BooleanField(help_text=_("The router itself may offer it to them."))
    reason = serializers.CharField(
        allow_null=True,
        help_text=_(
            "Why not (or why the router would not): not_member, skill, offline, channel, "
            "no_console, capacity, pacing, refused, refused_others_first, preferred_agent."
        ),
    )
    text = serializers.CharField(help_text=_("The reason in words; empty when none."))


class PushChoicesSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    subject = serializers.CharField()
    agents = _PushChoiceSerializer(many=True)


@extend_schema(tags=["supervisor"])
class ItemPushChoicesView(APIView):
    """The members of a waiting item's queue, those a push would reach first, each with the
    reason when they cannot take it (lacking a skill it requires, offline, not available for its
    channel, no live console, at capacity, at their limit of unanswered offers) or when the router
    would not offer it to them (refused it, preferred agent)."""

    permission_classes = [IsSupervisor]

    @extend_schema(responses=PushChoicesSerializer)
    def get(self, request: Request, item_id: int) -> Response:
        return Response(push_choices(request.user, item_id, timezone.now()))


@extend_schema(tags=["supervisor"])
class WorkTransferActionView(APIView):
    """Hand an agent's accepted work to another agent of your queues: offered to them directly
    (409 with the reason when they cannot take it now), with a note they see. Logged with who
    did it."""

    permission_classes = [IsSupervisor]

    @extend_schema(request=TransferActionSerializer, responses=WorkPayloadSerializer)
    def post(self, request: Request, work_id: int) -> Response:
        data = validated(TransferActionSerializer, request.data)
        work = services.supervisor_transfer_work(
            actor=request.user, work_id=work_id, agent_id=data["agent"], note=data["note"]
        )
        return Response(work_payload(work))
