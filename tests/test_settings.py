"""Settings come from the environment; bad values stop start-up naming the variable."""

import os
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from tests.live import ROOT
from xiaoxiang import env

PRODUCTION = {
    "DEBUG": "false",
    "SECRET_KEY": "k8#Qz!v2Lr$7mP@x9Wn&4Tb^6Yc*1Hd(3Jf)5Gs_0Ae+8Ui=2Ko-7Nl|9Vq~4Rw",
    "ALLOWED_HOSTS": "track.xiaoxiang.example",
    "FIELD_ENCRYPTION_KEYS": f"{Fernet.generate_key().decode()},{Fernet.generate_key().decode()}",
    "DATABASE_URL": "postgres://xiaoxiang@127.0.0.1:5432/xiaoxiang",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def _manage(*args: str, **environ: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {*PRODUCTION, "HTTPS_ONLY"}}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **environ},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("value", ["TRUE", "true", "1", "True"])
def test_booleans_accept_true_spellings(monkeypatch, value):
    monkeypatch.setenv("DEBUG", value)
    assert env.env_bool("DEBUG", False) is True


@pytest.mark.parametrize("value", ["FALSE", "false", "0"])
def test_booleans_accept_false_spellings(monkeypatch, value):
    monkeypatch.setenv("DEBUG", value)
    assert env.env_bool("DEBUG", True) is False


@pytest.mark.parametrize("value", ["yes", "on", "2", "tru"])
def test_bad_boolean_names_the_variable(monkeypatch, value):
    monkeypatch.setenv("HTTPS_ONLY", value)
    with pytest.raises(ImproperlyConfigured, match="HTTPS_ONLY"):
        env.env_bool("HTTPS_ONLY", False)


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("ALLOWED_HOSTS", " a.example , b.example,")
    assert env.env_list("ALLOWED_HOSTS", []) == ["a.example", "b.example"]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DEBUG", "maybe"),
        ("HTTPS_ONLY", "sometimes"),
        ("DATABASE_URL", "mysql://x@y/z"),
        ("REDIS_URL", "localhost:6379"),
        ("FIELD_ENCRYPTION_KEYS", "not-a-fernet-key"),
    ],
)
def test_start_up_fails_loudly_naming_the_variable(variable, value):
    result = _manage("check", **{variable: value})
    assert result.returncode != 0
    assert variable in result.stderr


def test_production_requires_secrets():
    result = _manage("check", DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


def test_check_deploy_is_clean_with_real_values():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
