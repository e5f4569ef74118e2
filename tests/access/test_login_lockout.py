"""Login brute force (django-axes): N failures for one username from one address lock that pair out, on both logins."""

import pytest
from axes.models import AccessAttempt
from django.test import Client

from tests.access.conftest import ATTACKER, BYSTANDER
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

LOCKED = "Too many failed logins for this account from your address. Try again in 15 minutes."


@pytest.fixture(autouse=True)
def limit(settings):
    settings.AXES_FAILURE_LIMIT = 3
    settings.ACCESS_AUTO_BAN_THRESHOLD = 0  # only the lockout under test


def token(client, username: str, password: str, **headers):
    return client.post("/api/auth/token/", {"username": username, "password": password}, format="json", **headers)


def test_the_token_endpoint_locks_a_username_from_an_address_after_n_failures(client_from, customer):
    attacker = client_from(ATTACKER)

    # The Nth failure is already answered as the lockout; then even the right password is.
    failures = [token(attacker, "alice", f"guess-{attempt}").status_code for attempt in range(3)]
    locked = token(attacker, "alice", PASSWORD)

    assert failures == [401, 401, 429]
    assert locked.status_code == 429
    assert locked.json() == {"detail": LOCKED}
    assert locked["Retry-After"] == "900"
    assert "access" not in locked.json()
    # The same account from another address, and another account from this one, still log in.
    assert token(client_from(BYSTANDER), "alice", PASSWORD).status_code == 200
    assert AccessAttempt.objects.get().ip_address == ATTACKER


def test_another_account_from_the_locked_address_still_logs_in(client_from, customer, other_customer):
    attacker = client_from(ATTACKER)
    for attempt in range(3):
        token(attacker, "alice", f"guess-{attempt}")

    assert token(attacker, "bob", PASSWORD).status_code == 200


def test_a_forged_forwarding_header_does_not_reset_the_count(client_from, customer):
    attacker = client_from(ATTACKER)

    for attempt in range(3):
        forged = {"HTTP_X_FORWARDED_FOR": f"10.9.9.{attempt}", "HTTP_X_REAL_IP": "10.1.1.1"}
        token(attacker, "alice", f"guess-{attempt}", **forged)
    locked = token(attacker, "alice", PASSWORD, HTTP_X_FORWARDED_FOR="10.9.9.99")

    assert locked.status_code == 429


def test_a_success_before_the_limit_resets_the_failures(client_from, customer):
    attacker = client_from(ATTACKER)
    for attempt in range(2):
        token(attacker, "alice", f"guess-{attempt}")
    assert token(attacker, "alice", PASSWORD).status_code == 200

    for attempt in range(2):
        token(attacker, "alice", f"again-{attempt}")

    assert token(attacker, "alice", PASSWORD).status_code == 200


def test_the_session_login_page_locks_too_and_logs_nobody_in(customer):
    browser = Client(REMOTE_ADDR=ATTACKER)

    failures = [
        browser.post("/accounts/login/", {"username": "alice", "password": f"guess-{attempt}"}).status_code
        for attempt in range(3)
    ]
    locked = browser.post("/accounts/login/", {"username": "alice", "password": PASSWORD})

    assert failures == [200, 200, 429]  # the form again with its error, then the lockout
    assert locked.status_code == 429
    assert LOCKED in locked.content.decode()
    assert "_auth_user_id" not in browser.session
    assert browser.get("/orders/").status_code == 302  # still sent to the login page


def test_both_logins_count_toward_one_lockout(client_from, customer):
    for attempt in range(2):
        Client(REMOTE_ADDR=ATTACKER).post("/accounts/login/", {"username": "alice", "password": f"guess-{attempt}"})
    token(client_from(ATTACKER), "alice", "guess-api")

    assert token(client_from(ATTACKER), "alice", PASSWORD).status_code == 429
