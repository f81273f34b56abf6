"""HTTP middleware of our own: the Permissions-Policy header (Django sets the other security
headers itself, django-csp the Content-Security-Policy)."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.deprecation import MiddlewareMixin


class PermissionsPolicyMiddleware(MiddlewareMixin):
    """Adds ``Permissions-Policy: <settings.PERMISSIONS_POLICY>`` unless a view set its own.
    (MiddlewareMixin: runs in sync and async stacks alike, no thread hop under ASGI.)"""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if settings.PERMISSIONS_POLICY and "Permissions-Policy" not in response:
            response["Permissions-Policy"] = settings.PERMISSIONS_POLICY
        return response
