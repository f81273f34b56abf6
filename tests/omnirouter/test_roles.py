"""Roles: the signed-in user a service records, never an anonymous one."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.core.exceptions import PermissionDenied

from omnirouter.roles import signed_in


def test_a_signed_in_user_is_the_user_a_service_records():
    user = User(username="ana")

    assert signed_in(user) is user


def test_an_anonymous_user_is_refused_not_handed_to_a_service():
    with pytest.raises(PermissionDenied):
        signed_in(AnonymousUser())
