"""Messaging REST API: customers, merging, cases, conversations. Thin: validate, one service call.

Every read is scoped by who asks (``selectors.visible_*``): out-of-scope ids answer 404.

- ``GET /api/customers/<id>/``: the customer with the conversations (full transcripts) and
  cases the caller may see, and the merges into them.
- ``POST /api/customers/<id>/merge/`` ``{"other": id}``: merge ``other`` into this customer.
- ``POST /api/customers/<id>/unmerge/`` ``{"merge": id}`` (optional): undo a merge into it.
- ``POST /api/cases/``: open a case, the customer named by ``email``, ``phone`` or
  ``identity`` (``{"kind", "value"}``), or by ``customer`` id (staff only).
- ``GET /api/customers/<id>/timeline/?q=&page=``: every conversation (transcript) and case the
  caller may see, newest first, searchable, paged (``messaging.timeline``).
- ``POST /api/customers/<id>/identities/`` ``{"kind", "value", "conversation"?}``: the customer
  says this phone/e-mail is theirs (``messaging.linking.add_identity``).
- ``POST /api/customers/<id>/suggestions/merge/`` ``{"other": id}``: merge a suggested match.
- ``GET /api/conversations/<id>/``: one conversation, its transcript, customer, quick replies,
  and the "also wrote on SMS 2 days ago" line.
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

from messaging import linking, selectors, services, timeline
from messaging.models import CaseOrigin, CasePriority, Conversation, Customer, IdentityKind
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


def _agent(request: Request) -> Any:
    agent = roles.agent_of(request.user)
    if agent is None:
        raise Forbidden(str(_("Only agents may do this.")), "not_an_agent")
    return agent


class MergeInputSuggested(serializers.Serializer):
    other = serializers.IntegerField(
        help_text="The suggested customer (suggestions[].customer_id)."
    )


class CustomerView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(responses={200: dict})
    def get(self, request: Request, customer_id: int) -> Response:
        customer = selectors.visible_customer(request.user, customer_id)
        body = selectors.customer_record(customer, request.user)
        body["suggestions"] = linking.suggested_matches(customer, request.user)
        return Response(body)


class TimelineQuery(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    page = serializers.IntegerField(required=False, default=1, min_value=1)
    page_size = serializers.IntegerField(
        required=False, default=timeline.PAGE_SIZE, min_value=1, max_value=timeline.MAX_PAGE_SIZE
    )


class CustomerTimelineView(APIView):
    """The customer's conversations and cases on every channel, newest first, that you may
    see; ``q`` searches message text and case subjects."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(parameters=[TimelineQuery], responses={200: dict})
    def get(self, request: Request, customer_id: int) -> Response:
        query = TimelineQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        customer = selectors.visible_customer(request.user, customer_id)
        body = timeline.customer_timeline(customer, request.user, **query.validated_data)
        body["suggestions"] = linking.suggested_matches(customer, request.user)
        return Response(body)


class AddIdentityInput(serializers.Serializer):
    kind = serializers.ChoiceField(
        choices=[(k, k) for k in linking.LINKABLE_KINDS], help_text="phone, whatsapp or email."
    )
    value = serializers.CharField(max_length=200)
    conversation = serializers.IntegerField(
        required=False, help_text="Where the customer writes now: a code can be typed there."
    )


class CustomerIdentitiesView(APIView):
    """The customer says this address is theirs: added, or a code sent to prove it, or a
    suggested match (``status``)."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=AddIdentityInput, responses={200: dict, 201: dict})
    def post(self, request: Request, customer_id: int) -> Response:
        data = AddIdentityInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer = selectors.visible_customer(request.user, customer_id)
        conversation: Conversation | None = None
        if data.validated_data.get("conversation"):
            conversation = selectors.visible_conversation(
                request.user, data.validated_data["conversation"]
            )
        outcome = services.add_customer_identity(
            customer=customer,
            kind=data.validated_data["kind"],
            value=data.validated_data["value"],
            actor=roles.signed_in(request.user),
            conversation=conversation,
        )
        body: dict[str, Any] = {"status": outcome.status}
        if outcome.claim is not None:
            body["claim"] = {
                "id": outcome.claim.pk,
                "status": outcome.claim.status,
                "sent_to": outcome.claim.sent_to,
                "other_customer_id": outcome.claim.owner_id,
            }
        body["customer"] = selectors.customer_summary(customer)
        code = status.HTTP_201_CREATED if outcome.status == "added" else status.HTTP_200_OK
        return Response(body, status=code)


class SuggestedMergeView(APIView):
    """Merge a suggested match into one customer (supervisors; the agent answering both)."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=MergeInputSuggested, responses={200: dict})
    def post(self, request: Request, customer_id: int) -> Response:
        data = MergeInputSuggested(data=request.data)
        data.is_valid(raise_exception=True)
        customer = selectors.visible_customer(request.user, customer_id)
        record = linking.merge_suggested(
            customer=customer,
            other_id=data.validated_data["other"],
            actor=roles.signed_in(request.user),
        )
        return Response(selectors.merge_payload(record))


class MergeInput(serializers.Serializer):
    other = serializers.IntegerField(help_text="The customer to merge into this one.")


class CustomerMergeView(APIView):
    """Merge ``other`` into the customer in the URL (supervisors; the agent answering both)."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=MergeInput, responses={200: dict})
    def post(self, request: Request, customer_id: int) -> Response:
        data = MergeInput(data=request.data)
        data.is_valid(raise_exception=True)
        survivor = selectors.visible_customer(request.user, customer_id)
        other = Customer.objects.filter(pk=data.validated_data["other"]).first()
        if other is None:
            raise NotFound(str(_("No such customer.")), "not_found")
        record = services.merge_customers(
            survivor=survivor, other=other, actor=roles.signed_in(request.user)
        )
        body = selectors.customer_record(record.survivor, request.user)
        return Response({**body, "merge": selectors.merge_payload(record)})


class UnmergeInput(serializers.Serializer):
    merge = serializers.IntegerField(
        required=False, help_text="The merge record to undo; the latest one by default."
    )


class CustomerUnmergeView(APIView):
    """Undo a merge into the customer in the URL; what moved goes back."""

    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=UnmergeInput, responses={200: dict})
    def post(self, request: Request, customer_id: int) -> Response:
        data = UnmergeInput(data=request.data)
        data.is_valid(raise_exception=True)
        customer = selectors.visible_customer(request.user, customer_id)
        record = services.unmerge_customers(
            customer=customer,
            actor=roles.signed_in(request.user),
            merge_id=data.validated_data.get("merge"),
        )
        return Response(selectors.merge_payload(record))


class IdentityInput(serializers.Serializer):
    kind = serializers.ChoiceField(choices=IdentityKind.choices)
    value = serializers.CharField(max_length=200)


class CaseInput(serializers.Serializer):
    subject = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    priority = serializers.ChoiceField(choices=CasePriority.choices, default=CasePriority.NORMAL)
    origin = serializers.ChoiceField(choices=CaseOrigin.choices, default=CaseOrigin.API)
    customer = serializers.IntegerField(
        required=False, help_text="Staff only: a customer you can see."
    )
    email = serializers.EmailField(required=False)
    phone = serializers.CharField(required=False, max_length=40)
    identity = IdentityInput(required=False, help_text="Any address: phone, e-mail, channel id.")
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [key for key in ("customer", "email", "phone", "identity") if attrs.get(key)]
        if len(given) != 1:
            raise serializers.ValidationError(
                _(
                    "Name the customer once: by an address (email, phone or identity) "
                    "or, staff only, by customer id."
                )
            )
        return attrs


class CasesView(APIView):
    """Open a case. By an address (intake clients, and anyone): the customer is matched or
    made, and the answer is the same whether the address was known or not (no customer
    fields). By customer id: staff, for customers they can see."""

    permission_classes = [CanOpenCases]

    @extend_schema(request=CaseInput, responses={201: dict})
    def post(self, request: Request) -> Response:
        data = CaseInput(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        fields = {
            "subject": values["subject"],
            "description": values["description"],
            "priority": values["priority"],
            "origin": values["origin"],
            "opened_by": request.user,
        }
        if values.get("customer"):
            if not selectors.can_view_customers(request.user):
                raise serializers.ValidationError(
                    {"customer": [_("Intake clients name the customer by an address, not by id.")]}
                )
            customer = selectors.visible_customer(request.user, values["customer"])
            case = services.open_case(customer=customer, **fields)
            return Response(selectors.case_payload(case), status=status.HTTP_201_CREATED)
        if values.get("email"):
            kind, value = IdentityKind.EMAIL, values["email"]
        elif values.get("phone"):
            kind, value = IdentityKind.PHONE, values["phone"]
        else:
            kind, value = values["identity"]["kind"], values["identity"]["value"]
        case = services.open_case_for_identity(
            kind=kind, value=value, name=values["name"], **fields
        )
        return Response(selectors.intake_case_payload(case), status=status.HTTP_201_CREATED)


class ConversationView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(responses={200: dict})
    def get(self, request: Request, conversation_id: int) -> Response:
        conversation = selectors.visible_conversation(request.user, conversation_id)
        detail = selectors.conversation_detail(conversation)
        detail["quick_replies"] = selectors.quick_replies(request.LANGUAGE_CODE or "")
        detail["customer_url"] = f"/customers/{conversation.customer_id}/"
        detail["also_wrote"] = timeline.also_wrote(conversation, request.user)
        return Response(detail)


class ReplyInput(serializers.Serializer):
    text = serializers.CharField(max_length=services.MAX_TEXT_LENGTH, trim_whitespace=True)


class ConversationReplyView(APIView):
    permission_classes = [IsAgentOrSupervisor]

    @extend_schema(request=ReplyInput, responses={201: dict})
    def post(self, request: Request, conversation_id: int) -> Response:
        data = ReplyInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = selectors.visible_conversation(request.user, conversation_id)
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
        selectors.visible_conversation(request.user, conversation_id)
        services.close_conversation(
            conversation_id=conversation_id,
            by="agent",
            agent=_agent(request),
            note=data.validated_data["note"],
        )
        conversation = selectors.visible_conversation(request.user, conversation_id)
        return Response(selectors.conversation_summary(conversation))


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
        selectors.visible_conversation(request.user, conversation_id)
        case = services.open_case_from_conversation(
            conversation_id=conversation_id, agent=_agent(request), **data.validated_data
        )
        return Response(selectors.case_payload(case), status=status.HTTP_201_CREATED)
