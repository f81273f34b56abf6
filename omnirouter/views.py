"""Platform pages: liveness, readiness and metrics (see ``omnirouter.health``, ``.monitoring``), the
404 answer of paths no URL matches, and the API's token endpoint."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext_lazy as _
from django.views import defaults
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.authtoken.models import Token
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from omnirouter.health import ReadinessView, healthz
from omnirouter.monitoring import metrics_view
from omnirouter.ratelimit import locked_out_json

__all__ = ["ObtainTokenView", "ReadinessView", "healthz", "metrics_view", "not_found"]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for paths no URL matches: JSON under /api/ (what API clients parse), the HTML page
    elsewhere. (Views that find no record answer their own 404.)"""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found.", "code": "not_found"}, status=404)
    return defaults.page_not_found(request, exception)


class TokenRequestSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, style={"input_type": "password"})


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(
        help_text=_("Send it as the header: Authorization: Token <token>")
    )
    user_id = serializers.IntegerField()
    username = serializers.CharField()


@extend_schema(
    tags=["auth"],
    request=TokenRequestSerializer,
    responses={
        200: TokenSerializer,
        401: OpenApiResponse(description=_("Wrong username or password, or an inactive user.")),
        429: OpenApiResponse(
            description=_(
                "Too many failed logins for this username from this address: locked for "
                "LOGIN_LOCKOUT_MINUTES (Retry-After says how long), as the login page is."
            )
        ),
    },
)
class ObtainTokenView(APIView):
    """Exchange a username and password for the user's API token (created on first use; the
    same token after). For API agents and intake clients. Failed attempts count towards the
    same lockout as the login page (django-axes)."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]

    def post(self, request: Request) -> Response | HttpResponse:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        django_request = request._request
        user = authenticate(
            django_request,
            username=serializer.validated_data["username"],
            password=serializer.validated_data["password"],
        )
        if getattr(django_request, "axes_locked_out", False):
            return locked_out_json(django_request)
        if user is None or not user.is_active:
            return Response(
                {"detail": _("Wrong username or password."), "code": "invalid_credentials"},
                status=401,
                headers={"WWW-Authenticate": "Token"},
            )
        token, _created = Token.objects.get_or_create(user=user)
        return Response({"token": token.key, "user_id": user.pk, "username": user.get_username()})
