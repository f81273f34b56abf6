"""Assistance API: an item's predictions and suggestions (for the people working it), agents'
feedback on them, and training on demand (admins).

With no usable model the answers are 200 with ``{"available": false, "reason": ...}``: assistance
is optional and never in the way of work.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from assist import predict, prefill, selectors, services, tasks
from assist.models import FeedbackKind
from omnirouter import roles
from omnirouter.permissions import IsAdmin, IsAgent
from omnirouter.roles import signed_in
from omnirouter.viewsets import validated
from routing.models import WorkItem


class IsStaff(BasePermission):
    message = _("Only agents, supervisors and administrators may see assistance.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(
            user
            and user.is_authenticated
            and (roles.is_supervisor(user) or roles.agent_of(user) is not None)
        )


def _item(request: Request, item_id: int) -> WorkItem:
    return get_object_or_404(selectors.assistable_items(request.user), pk=item_id)


# "label" is also an attribute of every serializer field: declared through inline_serializer.
_GuessSerializer = inline_serializer(
    "AssistGuess",
    fields={
        "id": serializers.IntegerField(help_text=_("The stored prediction, for feedback.")),
        "label": serializers.CharField(),
        "confidence": serializers.FloatField(),
        "top_terms": serializers.ListField(
            child=serializers.ListField(child=serializers.JSONField()),
            help_text=_("[term, weight]: the item's terms that weighed most."),
        ),
    },
)


class PredictionSerializer(serializers.Serializer):
    available = serializers.BooleanField()
    reason = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)
    predictions = serializers.DictField(child=_GuessSerializer, required=False)
    threshold = serializers.FloatField(required=False)
    prefill = serializers.DictField(required=False)


class PredictionView(APIView):
    """The active model's guesses for an item (queue, priority) with the terms that weighed
    most, and values read from its first messages to prefill (order number, e-mail, phone,
    product, language, category)."""

    permission_classes = [IsStaff]

    @extend_schema(responses=PredictionSerializer)
    def get(self, request: Request, item_id: int) -> Response:
        item = _item(request, item_id)
        answer = services.record_predictions(item=item)
        fields = selectors.item_fields(item)
        found = prefill.extract(
            "\n".join([fields["subject"], *fields["messages"]]),
            catalogue=settings.ASSIST_PRODUCT_CATALOGUE,
        )
        if answer["available"] and "queue" in answer["predictions"]:
            found["category"] = answer["predictions"]["queue"]["label"]
        answer["prefill"] = found
        answer["threshold"] = float(selectors.configuration().confidence_threshold)
        return Response(answer)


class _SuggestionSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    subject = serializers.CharField()
    queue = serializers.CharField()
    disposition = serializers.CharField()
    resolution = serializers.CharField()
    similarity = serializers.FloatField()


class SuggestionsSerializer(serializers.Serializer):
    available = serializers.BooleanField()
    reason = serializers.CharField(required=False)
    version = serializers.IntegerField(required=False)
    suggestions = _SuggestionSerializer(many=True, required=False)


class SuggestionsView(APIView):
    """The most similar resolved items, with how they were resolved."""

    permission_classes = [IsStaff]

    @extend_schema(responses=SuggestionsSerializer)
    def get(self, request: Request, item_id: int) -> Response:
        return Response(predict.suggestions(_item(request, item_id)))


class FeedbackInputSerializer(serializers.Serializer):
    field = serializers.CharField(
        max_length=40, help_text=_('"queue", a prefilled field, or "suggestion".')
    )
    kind = serializers.ChoiceField(choices=FeedbackKind.choices)
    suggested_value = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    corrected_value = serializers.CharField(
        max_length=200, required=False, allow_blank=True, default=""
    )
    prediction = serializers.IntegerField(required=False, allow_null=True, default=None)
    suggested_item = serializers.IntegerField(required=False, allow_null=True, default=None)


class FeedbackView(APIView):
    """An agent's answer to a prediction, a prefilled value or a suggestion: used, not helpful,
    accepted, or corrected (with the right value)."""

    permission_classes = [IsAgent]

    @extend_schema(request=FeedbackInputSerializer, responses={201: None})
    def post(self, request: Request, item_id: int) -> Response:
        item = _item(request, item_id)
        data = validated(FeedbackInputSerializer, request.data)
        feedback = services.record_feedback(
            item=item,
            agent=roles.agent_of(request.user),
            field=data["field"],
            kind=data["kind"],
            suggested_value=data["suggested_value"],
            corrected_value=data["corrected_value"],
            prediction_id=data["prediction"],
            suggested_item_id=data["suggested_item"],
        )
        return Response({"id": feedback.pk}, status=status.HTTP_201_CREATED)


class TrainView(APIView):
    """Train a new model version now, in the background (it becomes active only if it beats
    the active one on the newest items)."""

    permission_classes = [IsAdmin]

    @extend_schema(request=None, responses={202: None})
    def post(self, request: Request) -> Response:
        started = tasks.request_training(signed_in(request.user).pk)
        return Response({"started": started}, status=status.HTTP_202_ACCEPTED)
