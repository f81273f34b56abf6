"""Helpers for API and admin tests: users in each role, and clients signed in as them."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from rest_framework.test import APIClient

from omnirouter import roles

PASSWORD = "role-pass-123"


def make_user(username: str, *, group: str | None = None, superuser: bool = False):
    """A user with the given role group (``roles.ADMIN``, ``SUPERVISOR``, ``INTAKE``)."""
    user_model = get_user_model()
    if superuser:
        return user_model.objects.create_superuser(username, password=PASSWORD)
    user = user_model.objects.create_user(username, password=PASSWORD)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


def make_supervisor(username: str, *queues) -> AbstractBaseUser:
    user = make_user(username, group=roles.SUPERVISOR)
    for queue in queues:
        queue.supervisors.add(user)
    return user


def client_for(user: AbstractBaseUser | None) -> APIClient:
    """A client with a real session for ``user`` (anonymous when None)."""
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client
