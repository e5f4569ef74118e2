"""Bearer-token authentication for the REST API (settings: DEFAULT_AUTHENTICATION_CLASSES)."""

from typing import Any

from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme
from rest_framework_simplejwt.authentication import JWTAuthentication

from xiaoxiang.roles import GROUP_ROLES

# The user and their first role group (GROUP_ROLES order) in one query. Raw
# SQL because the ORM's subquery takes more CPU to compile than the query
# takes to run, on every request. The tables are django.contrib.auth's.
_USER_WITH_ROLE_GROUP_SQL = """
SELECT auth_user.*, (
    SELECT auth_group.name FROM auth_group JOIN auth_user_groups ON auth_user_groups.group_id = auth_group.id
    WHERE auth_user_groups.user_id = auth_user.id AND auth_group.name IN (%s, %s, %s)
    ORDER BY CASE auth_group.name WHEN %s THEN 0 WHEN %s THEN 1 ELSE 2 END LIMIT 1
) AS role_group
FROM auth_user WHERE auth_user.id = %s
"""


class _UsersWithRole:
    """Stands in for the user model in simplejwt's get_user, which reads only `objects.get` and `DoesNotExist`."""

    def __init__(self, model: Any) -> None:
        self._model = model
        self.DoesNotExist = model.DoesNotExist
        self.objects = self

    def get(self, **lookup: Any) -> Any:
        ((_, pk),) = lookup.items()  # {USER_ID_FIELD: the token's user id}
        found = list(self._model._default_manager.raw(_USER_WITH_ROLE_GROUP_SQL, [*GROUP_ROLES, *GROUP_ROLES[:2], pk]))
        if not found:
            raise self.DoesNotExist
        return found[0]


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
