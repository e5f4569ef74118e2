"""Bearer-token authentication for the REST API (settings: DEFAULT_AUTHENTICATION_CLASSES)."""

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication

from xiaoxiang.roles import users_with_role_group


class _UsersWithRole:
    """Stands in for the user model in simplejwt's get_user, which reads only `objects.get` and `DoesNotExist`."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.DoesNotExist = model.DoesNotExist
        self.objects = self

    def get(self, **lookup: Any) -> Any:
        return users_with_role_group(self._model._default_manager.all()).get(**lookup)


class RoleJWTAuthentication(JWTAuthentication):
    """simplejwt's bearer authentication, loading the user and their role in one query.

    Every check of simplejwt's get_user stays (unknown user, deactivated
    user, revoked token); only its query changes, so HasRole costs no query.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user_model = _UsersWithRole(self.user_model)


class RoleJWTScheme(SimpleJWTScheme):
    # drf-spectacular documents simplejwt's class only, not its subclasses.
    target_class = "xiaoxiang.auth.RoleJWTAuthentication"
