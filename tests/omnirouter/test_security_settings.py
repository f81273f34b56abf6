"""Production settings from the environment: check --deploy is clean, the embedded secret key
is private, and every response carries the security headers."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from tests.harness import REPO_ROOT

PRODUCTION = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": "test-only-" + "k" * 60,
    "DJANGO_ALLOWED_HOSTS": "support.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://support.example.com",
    "DJANGO_SECURE_SSL_REDIRECT": "true",
    "DJANGO_SECURE_HSTS_SECONDS": "31536000",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_SESSION_COOKIE_SECURE": "true",
    "DJANGO_CSRF_COOKIE_SECURE": "true",
}


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_"))}
    base.pop("REDIS_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_is_clean_in_production_mode(tmp_path):
    result = _manage(
        {**PRODUCTION, "OMNIROUTER_VAR_DIR": str(tmp_path)},
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_names_what_is_missing(tmp_path):
    env = {**PRODUCTION, "OMNIROUTER_VAR_DIR": str(tmp_path), "DJANGO_SECURE_HSTS_SECONDS": "0"}
    result = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode != 0
    assert "security.W004" in result.stderr


def test_the_embedded_secret_key_file_is_private(tmp_path):
    result = _manage({"OMNIROUTER_VAR_DIR": str(tmp_path)}, "check")
    assert result.returncode == 0, result.stderr
    key_file = tmp_path / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(key_file.read_text()) >= 50

    # a key file an older version left readable by others is made private
    key_file.chmod(0o644)
    assert _manage({"OMNIROUTER_VAR_DIR": str(tmp_path)}, "check").returncode == 0
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600


def test_responses_carry_the_security_headers(db, client):
    response = client.get("/accounts/login/")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "microphone=()" in response["Permissions-Policy"]


def test_redoc_alone_may_use_inline_styles(db, client):
    assert "unsafe-inline" not in client.get("/api/docs/")["Content-Security-Policy"]
    assert "unsafe-inline" in client.get("/api/docs/redoc/")["Content-Security-Policy"]
