"""The merge of two customers itself: locks, what moves, the record that undoes it.

Without permission checks: ``messaging.services.merge_customers`` (who may merge) and
``messaging.linking`` (a customer who proved an address, a suggested match) decide, then call
``apply_merge``. Lock order: customers, by id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import QuerySet
from django.utils.translation import gettext as _

from messaging.models import Case, Conversation, Customer, CustomerIdentity, MergeRecord
from omnirouter.errors import Conflict, DomainError, NotFound


def lock_customers(*ids: int) -> dict[int, Customer]:
    # Rows locked in id order: a merge the other way round waits instead of deadlocking.
    locked = {
        c.pk: c for c in Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    }
    if len(locked) != len(set(ids)):
        raise NotFound(_("No such customer."), "not_found")
    return locked


def apply_merge(
    *, survivor_id: int, other_id: int, actor: User | None, now: datetime
) -> MergeRecord:
    """The merge itself, without permission checks: for ``merge_customers`` (which checks) and
    for merges the customer proved (``messaging.linking``, no actor). Locks both customers in
    id order; Conflict if either was merged meanwhile."""
    if survivor_id == other_id:
        raise DomainError(_("A customer cannot be merged with itself."), "same_customer")
    with transaction.atomic():
        locked = lock_customers(survivor_id, other_id)
        keep, gone = locked[survivor_id], locked[other_id]
        for customer in (keep, gone):
            if customer.merged_into_id:
                raise Conflict(
                    _("Customer #%(id)s was already merged into #%(into)s.")
                    % {"id": customer.pk, "into": customer.merged_into_id},
                    "already_merged",
                )
        moved = {
            "identity_ids": ids_of(CustomerIdentity.objects.filter(customer=gone)),
            "conversation_ids": ids_of(Conversation.objects.filter(customer=gone)),
            "case_ids": ids_of(Case.objects.filter(customer=gone)),
            # Earlier merges into ``gone`` now lead straight to the survivor.
            "redirected_customer_ids": ids_of(Customer.objects.filter(merged_into=gone)),
        }
        CustomerIdentity.objects.filter(pk__in=moved["identity_ids"]).update(customer=keep)
        Conversation.objects.filter(pk__in=moved["conversation_ids"]).update(customer=keep)
        Case.objects.filter(pk__in=moved["case_ids"]).update(customer=keep)
        Customer.objects.filter(pk__in=moved["redirected_customer_ids"]).update(merged_into=keep)
        gone.merged_into, gone.merged_at, gone.merged_by = keep, now, actor
        gone.save(update_fields=["merged_into", "merged_at", "merged_by"])
        took_name = not keep.display_name and bool(gone.display_name)
        if took_name:
            keep.display_name = gone.display_name
            keep.save(update_fields=["display_name"])
        return MergeRecord.objects.create(
            survivor=keep,
            merged=gone,
            actor=actor,
            merged_at=now,
            took_display_name=took_name,
            **moved,
        )


def ids_of(queryset: QuerySet[Any]) -> list[int]:
    return sorted(queryset.values_list("pk", flat=True))
