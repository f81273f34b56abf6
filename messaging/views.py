"""Pages: the customer record (staff), self-service help and case status (customers), and the
demo shop that embeds the web-chat widget."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from messaging import selectors, services
from messaging.models import Case, Customer
from omnirouter import ratelimit, roles
from omnirouter.errors import DomainError, NotFound


@login_required
def customer_page(request: HttpRequest, customer_id: int) -> HttpResponse:
    """The conversations and cases of one customer the viewer may see, newest first."""
    customer = _customer_page_record(request, customer_id)
    if customer.pk != customer_id:
        return redirect("customer", customer_id=customer.pk)
    return render(
        request,
        "messaging/customer.html",
        {
            "customer": customer,
            "history": selectors.history_items(customer, request.user),
            "merges": selectors.customer_merges(customer),
            "can_merge": roles.agent_of(request.user) is not None
            or roles.is_supervisor(request.user),
        },
    )


def _customer_page_record(request: HttpRequest, customer_id: int) -> Customer:
    """The customer a page action is about: 403 for a role that sees no customers, 404 for one
    outside the viewer's scope (as the page itself answers)."""
    if not selectors.can_view_customers(request.user):
        raise PermissionDenied
    try:
        return selectors.visible_customer(request.user, customer_id)
    except NotFound as exc:
        raise Http404 from exc


@login_required
@require_POST
def customer_merge(request: HttpRequest, customer_id: int) -> HttpResponse:
    survivor = _customer_page_record(request, customer_id)
    other_id = request.POST.get("other", "").strip()
    other = Customer.objects.filter(pk=other_id).first() if other_id.isdigit() else None
    try:
        if other is None:
            raise NotFound(_("No such customer."), "not_found")
        services.merge_customers(
            survivor=survivor, other=other, actor=roles.signed_in(request.user)
        )
    except NotFound:
        messages.error(request, _("No customer with number %(id)s.") % {"id": other_id or "-"})
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, _("Customer #%(other)s was merged into this record.") % {"other": other_id}
        )
    return redirect("customer", customer_id=survivor.pk)


@login_required
@require_POST
def customer_unmerge(request: HttpRequest, customer_id: int) -> HttpResponse:
    customer = _customer_page_record(request, customer_id)
    merge_id = request.POST.get("merge", "").strip()
    try:
        record = services.unmerge_customers(
            customer=customer,
            actor=roles.signed_in(request.user),
            merge_id=int(merge_id) if merge_id.isdigit() else None,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request,
            _("The merge of customer #%(other)s was undone.") % {"other": record.merged_id},
        )
    return redirect("customer", customer_id=customer.pk)


class HelpForm(forms.Form):
    name = forms.CharField(label=gettext_lazy("Your name"), max_length=200)
    email = forms.EmailField(label=gettext_lazy("E-mail"))
    subject = forms.CharField(label=gettext_lazy("Subject"), max_length=200)
    description = forms.CharField(
        label=gettext_lazy("How can we help?"), widget=forms.Textarea(attrs={"rows": 6})
    )


@require_http_methods(["GET", "POST"])
def help_page(request: HttpRequest) -> HttpResponse:
    """Self-service: a customer opens a case; they get a private link to follow it, and a
    confirmation link by e-mail. The answer is the same whether the address was known. One
    address may open HELP_CASES_PER_HOUR cases; past that the form says so (429, Retry-After)."""
    form = HelpForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        wait = ratelimit.hit(
            f"help:{ratelimit.client_key(request)}",
            limit=settings.HELP_CASES_PER_HOUR,
            window_seconds=3600,
        )
        if wait:
            form.add_error(
                None,
                _("Too many requests from your address. Please try again in %(minutes)s minutes.")
                % {"minutes": max(1, round(wait / 60))},
            )
            response = render(request, "messaging/help.html", {"form": form}, status=429)
            response["Retry-After"] = ratelimit.retry_after_header(wait)
            return response
        try:
            case = services.open_self_service_case(
                **form.cleaned_data,
                link_base=settings.MESSAGING_PUBLIC_BASE_URL or request.build_absolute_uri("/"),
            )
        except DomainError as exc:
            form.add_error(None, exc.message)
        else:
            return redirect("help-case", token=case.access_token)
    return render(request, "messaging/help.html", {"form": form})


def help_case(request: HttpRequest, token: str) -> HttpResponse:
    """The private status page of one case (whoever holds the link may see it)."""
    case = Case.objects.select_related("customer").filter(access_token=token).first()
    if case is None:
        raise Http404
    return render(request, "messaging/help_case.html", {"case": case})


def help_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """The link mailed to a self-service case's address: the sender confirms it was them."""
    try:
        case = services.confirm_case_requester(token=token)
    except DomainError as exc:
        return render(request, "messaging/help_confirm.html", {"error": exc.message}, status=400)
    return render(request, "messaging/help_confirm.html", {"case": case})
