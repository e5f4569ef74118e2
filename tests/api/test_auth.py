"""Accounts and JWT: register, obtain, rotate, logout, and every kind of bad token."""

import base64
import datetime as dt
import json

import pytest
from django.contrib.auth.models import User
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.api.conftest import db_counts
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _token_pair(api, username: str, password: str = PASSWORD) -> dict:
    response = api().post("/api/auth/token/", {"username": username, "password": password}, format="json")
    assert response.status_code == 200, response.content
    return response.json()


def test_register_creates_a_customer_who_can_log_in(api, groups):
    response = api().post(
        "/api/auth/register/",
        {"username": "carol", "password": "a-long-unusual-passphrase", "email": "carol@example.com"},
        format="json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "username": "carol", "email": "carol@example.com", "role": "customer"}
    user = User.objects.get(username="carol")
    assert [group.name for group in user.groups.all()] == ["customer"]
    assert not user.is_staff
    assert set(_token_pair(api, "carol", "a-long-unusual-passphrase")) == {"access", "refresh"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"username": "carol", "password": "123"}, "password"),  # too short and numeric
        ({"username": "carol", "password": "password123"}, "password"),  # common
        ({"username": "carolina", "password": "carolina1"}, "password"),  # too similar to the username
        ({"username": "carol"}, "password"),
        ({"password": "a-long-unusual-passphrase"}, "username"),
        ({"username": "no spaces allowed", "password": "a-long-unusual-passphrase"}, "username"),
        ({"username": "carol", "password": "a-long-unusual-passphrase", "email": "not-an-email"}, "email"),
    ],
)
def test_register_refuses_bad_input_and_stores_nothing(api, groups, payload, field):
    before = db_counts()

    response = api().post("/api/auth/register/", payload, format="json")

    assert response.status_code == 400
    assert response.json()["detail"]
    assert field in response.json()
    assert db_counts() == before


def test_register_refuses_a_taken_username(api, customer):
    before = db_counts()

    response = api().post(
        "/api/auth/register/", {"username": "alice", "password": "a-long-unusual-passphrase"}, format="json"
    )

    assert response.status_code == 400
    assert "username" in response.json()
    assert db_counts() == before


def test_token_with_wrong_password_is_401(api, customer):
    response = api().post("/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json")

    assert response.status_code == 401
    assert response.json()["detail"]


def test_refresh_rotates_and_the_old_refresh_token_is_dead(api, customer):
    pair = _token_pair(api, "alice")

    rotated = api().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")
    reused = api().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != pair["refresh"]
    assert reused.status_code == 401
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {rotated.json()['access']}")
    assert client.get("/api/orders/").status_code == 200


def test_logout_blacklists_the_refresh_token(api, customer):
    pair = _token_pair(api, "alice")
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair['access']}")

    response = client.post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json")
    refresh = api().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 200
    assert response.json() == {"detail": "Logged out."}
    assert refresh.status_code == 401


def test_logout_needs_authentication(api, customer):
    pair = _token_pair(api, "alice")

    response = api().post("/api/auth/logout/", {"refresh": pair["refresh"]}, format="json")

    assert response.status_code == 401
    assert api().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 200


def test_logout_refuses_another_users_refresh_token(api, customer, other_customer):
    bobs = _token_pair(api, "bob")

    response = api(customer).post("/api/auth/logout/", {"refresh": bobs["refresh"]}, format="json")

    assert response.status_code == 400
    assert "refresh" in response.json()
    assert api().post("/api/auth/token/refresh/", {"refresh": bobs["refresh"]}, format="json").status_code == 200


def test_logout_refuses_garbage(api, customer):
    response = api(customer).post("/api/auth/logout/", {"refresh": "not-a-token"}, format="json")

    assert response.status_code == 400
    assert "refresh" in response.json()


def _forged_tokens(user: User) -> dict[str, str]:
    genuine = str(AccessToken.for_user(user))
    header, payload, signature = genuine.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    as_staff = _b64({**claims, "user_id": str(user.pk + 1000), "is_staff": True})
    expired = AccessToken.for_user(user)
    expired.set_exp(lifetime=-dt.timedelta(seconds=1))
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, tampered": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{as_staff}.",
        "tampered payload": f"{header}.{as_staff}.{signature}",
        "wrong signature": f"{header}.{payload}.{signature[::-1]}",
        "other key": str(RefreshToken.for_user(user).access_token).rsplit(".", 1)[0] + "." + "A" * 43,
        "refresh as access": str(RefreshToken.for_user(user)),
        "expired": str(expired),
        "garbage": "abc.def.ghi",
    }


@pytest.mark.parametrize(
    "kind",
    [
        "alg none",
        "alg none, tampered",
        "tampered payload",
        "wrong signature",
        "other key",
        "refresh as access",
        "expired",
        "garbage",
    ],
)
def test_forged_or_expired_tokens_are_401(api, customer, kind):
    token = _forged_tokens(customer)[kind]
    client = api()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")

    response = client.get("/api/orders/")

    assert response.status_code == 401
    assert response.json()["detail"]


def test_token_of_a_deactivated_user_is_401(api, customer):
    client = api(customer)
    pair = _token_pair(api, "alice")
    User.objects.filter(pk=customer.pk).update(is_active=False)

    assert client.get("/api/orders/").status_code == 401
    assert api().post("/api/auth/token/", {"username": "alice", "password": PASSWORD}, format="json").status_code == 401
    assert api().post("/api/auth/token/refresh/", {"refresh": pair["refresh"]}, format="json").status_code == 401


def test_no_token_is_401_with_a_bearer_challenge(api):
    response = api().get("/api/orders/")

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
