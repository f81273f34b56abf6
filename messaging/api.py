"""Messaging REST API: customers, merging, cases, conversations. Thin: validate, one service call.

- ``GET /api/customers/<id>/``: the customer with every conversation (full transcripts) and case.
- ``POST /api/customers/<id>/merge/`` ``{"other": id}``: merge ``other`` into this customer.
- ``POST /api/cases/``: open a case (``customer`` id, or ``email`` and ``name``).
- ``GET /api/conversations/<id>/``: one conversation, its transcript, customer, quick replies.
- ``POST /api/conversations/<id>/reply/`` ``{"text"}``; ``POST .../close/``; ``POST .../cases/``.
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging import selectors, services
from messaging.models import CaseOrigin, CasePriority, Conversation, Customer
from omnirouter import roles
from omnirouter.errors import Forbidden, NotFound


class IsAgentOrSupervisor(BasePermission):
    message = _("Only agents, supervisors and administrators may see customers.")

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(request.user and request.user.is_authenticated) and (
            selectors.can_view_customers(request.user)
        )


class CanOpenCases(BasePermission):
    message = _("Only agents, supervisors, intake clients and administrators may open cases.")

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated) and (
            selectors.can_view_customers(user) or roles.is_intake(user)
        )


def _customer(customer_id: int) -> Customer:
    customer = Customer.objects.filter(pk=customer_id).first()
    if customer is None:
        raise NotFound(str(_("No customer %(id)s.") % {"id": customer_id}), "not_found")
    return selectors.resolve_customer(customer)


def _agent(request: Request) -> Any:
    agent = roles.agent_of(request.user)
    if agent is None:
        raise Forbidden(str(_("Only agents may do this.")), "not_an_agent")
    return agent


class CustomerView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(responses={200: dict})
    def get(self, request: Request, customer_id: int) -> Response:
        return Response(selectors.customer_record(_customer(customer_id)))


class MergeInput(serializers.Serializer):
    other = serializers.IntegerField(help_text="The customer to merge into this one.")


class CustomerMergeView(APIView):
    """Agents and admins merge two customers; the one in the URL survives."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=MergeInput, responses={200: dict})
    def post(self, request: Request, customer_id: int) -> Response:
        if roles.agent_of(request.user) is None and not roles.is_admin(request.user):
            raise Forbidden(str(_("Only agents and administrators may merge customers.")), "role")
        data = MergeInput(data=request.data)
        data.is_valid(raise_exception=True)
        survivor = _customer(customer_id)
        other = Customer.objects.filter(pk=data.validated_data["other"]).first()
        if other is None:
            raise NotFound(str(_("No customer %(id)s.") % {"id": data.validated_data["other"]}))
        merged = services.merge_customers(
            survivor=survivor, other=other, actor=roles.signed_in(request.user)
        )
        return Response(selectors.customer_record(merged))


class CaseInput(serializers.Serializer):
    subject = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=CasePriority.choices, default=CasePriority.NORMAL)
    origin = serializers.ChoiceField(choices=CaseOrigin.choices, default=CaseOrigin.API)
    customer = serializers.IntegerField(required=False)
    email = serializers.EmailField(required=False)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs.get("customer") and not attrs.get("email"):
            raise serializers.ValidationError(_("Give a customer id, or an e-mail address."))
        return attrs


class CasesView(APIView):
    permission_classes = [CanOpenCases]

    @extend_schema(request=CaseInput, responses={201: dict})
    def post(self, request: Request) -> Response:
        data = CaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values.get("customer"):
            customer = _customer(values["customer"])
        else:
            customer = services.identify_or_create_customer(
                kind="email", value=values["email"], name=values["name"]
            ).customer
        case = services.open_case(
            subject=values["subject"],
            description=values["description"],
            priority=values["priority"],
            origin=values["origin"],
            customer=customer,
            opened_by=roles.signed_in(request.user),
        )
        return Response(selectors.case_payload(case), status=status.HTTP_201_CREATED)


def _conversation(conversation_id: int) -> Conversation:
    conversation = (
        Conversation.objects.select_related("account", "identity", "customer", "assigned_agent")
        .filter(pk=conversation_id)
        .first()
    )
    if conversation is None:
        raise NotFound(str(_("No conversation %(id)s.") % {"id": conversation_id}), "not_found")
    return conversation


class ConversationView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(responses={200: dict})
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = _conversation(conversation_id)
        detail = selectors.conversation_detail(conversation)
        detail["quick_replies"] = selectors.quick_replies(request.LANGUAGE_CODE or "")
        detail["customer_url"] = f"/customers/{conversation.customer_id}/"
        return Response(detail)


class ReplyInput(serializers.Serializer):
    text = serializers.CharField(max_length=services.MAX_TEXT_LENGTH, trim_whitespace=True)


class ConversationReplyView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=ReplyInput, responses={201: dict})
    def post(self, request: Request, conversation_id: int) -> Response:
        data = ReplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = _conversation(conversation_id)
        message = services.send_reply(
            conversation_id=conversation.pk, agent=_agent(request), text=data.validated_data["text"]
        )
        payload = selectors.message_payload(message, conversation.customer.display_name)
        return Response(payload, status=status.HTTP_201_CREATED)


class CloseInput(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ConversationCloseView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=CloseInput, responses={200: dict})
    def post(self, request: Request, conversation_id: int) -> Response:
        data = CloseInput(data=request.data)
        data.is_valid(raise_exception=True)
        _conversation(conversation_id)
        conversation = services.close_conversation(
            conversation_id=conversation_id,
            by="agent",
            agent=_agent(request),
            note=data.validated_data["note"],
        )
        return Response(selectors.conversation_summary(_conversation(conversation.pk)))


class ConversationCaseInput(serializers.Serializer):
    subject = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=CasePriority.choices, default=CasePriority.NORMAL)


class ConversationCaseView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=ConversationCaseInput, responses={201: dict})
    def post(self, request: Request, conversation_id: int) -> Response:
        data = ConversationCaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        case = services.open_case_from_conversation(
            conversation_id=conversation_id, agent=_agent(request), **data.validated_data
        )
        return Response(selectors.case_payload(case), status=status.HTTP_201_CREATED)
