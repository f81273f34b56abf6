"""Login, the landing page that sends each role where it works, and the console page."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client

from omnirouter import roles

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_login_page_has_a_csrf_protected_form():
    response = Client(enforce_csrf_checks=True).get("/accounts/login/")

    body = response.content.decode()
    assert response.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in body
    assert '<label for="id_username">Username</label>' in body


def test_logging_in_without_the_csrf_token_is_refused(center):
    response = Client(enforce_csrf_checks=True).post(
        "/accounts/login/", {"username": "alice", "password": "agent-pass-123"}
    )

    assert response.status_code == 403


def test_an_agent_logs_in_and_lands_on_the_console(center):
    client = Client()

    response = client.post(
        "/accounts/login/", {"username": "alice", "password": "agent-pass-123"}, follow=True
    )

    assert response.redirect_chain == [("/", 302), ("/console/", 302)]
    assert response.templates[0].name == "presence/console.html"


def test_a_supervisor_is_sent_to_the_dashboard(center):
    response = signed_in(center.supervisor).get("/")

    assert (response.status_code, response["Location"]) == (302, "/supervisor/")


def test_an_admin_is_sent_to_the_admin_site():
    admin = get_user_model().objects.create_superuser("root", password="root-pass-123")

    response = signed_in(admin).get("/")

    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_a_user_without_a_workspace_sees_what_they_may_use():
    intake = get_user_model().objects.create_user("crm", password="crm-pass-123")
    intake.groups.add(Group.objects.get_or_create(name=roles.INTAKE)[0])

    response = signed_in(intake).get("/")

    assert response.status_code == 200
    assert [w["key"] for w in response.context["workspaces"]] == ["api"]


def test_the_navigation_lists_every_workspace_of_a_supervising_agent(center):
    center.alice.user.groups.add(Group.objects.get_or_create(name=roles.SUPERVISOR)[0])

    response = signed_in(center.alice.user).get("/console/")

    assert [w["key"] for w in response.context["workspaces"]] == ["console", "supervisor", "api"]


def test_anonymous_visitors_are_sent_to_log_in():
    response = Client().get("/console/")

    assert (response.status_code, response["Location"]) == (302, "/accounts/login/?next=/console/")


def test_the_console_is_for_agents_only(center):
    response = signed_in(center.supervisor).get("/console/")

    assert response.status_code == 403


def test_the_console_page_carries_its_settings_and_the_script_catalog(center):
    response = signed_in(center.alice.user).get("/console/")

    body = response.content.decode()
    assert response.context["console_config"] == {
        "wsPath": "/ws/agent/",
        "heartbeatSeconds": 10,
        "resyncSeconds": 60,
        "loginUrl": "/accounts/login/?next=/console/",
    }
    assert '<script src="/jsi18n/"></script>' in body
    assert 'id="console-config"' in body


def test_the_console_speaks_japanese_from_the_browser_or_the_language_switcher(center):
    client = signed_in(center.alice.user)

    from_browser = client.get("/console/", headers={"accept-language": "ja"})
    switched = client.post("/i18n/setlang/", {"language": "ja", "next": "/console/"})
    from_cookie = client.get("/console/")
    catalog = client.get("/jsi18n/")

    assert "受諾" in from_browser.content.decode()
    assert (switched.status_code, switched["Location"]) == (302, "/console/")
    assert "受諾" in from_cookie.content.decode()
    assert json.dumps("残り %(s)s 秒") in catalog.content.decode()  # the catalog escapes non-ASCII
