"""The roles a user acts in (DESIGN.md section 3): Django groups, and staff."""

from django.contrib.auth.models import AbstractBaseUser

ROLE_STAFF = "staff"
ROLE_CUSTOMER = "customer"
ROLE_RIDER = "rider"
ROLE_WAREHOUSE = "warehouse"
ALL_ROLES = (ROLE_CUSTOMER, ROLE_RIDER, ROLE_WAREHOUSE, ROLE_STAFF)


def user_role(user: AbstractBaseUser) -> str | None:
    """The role a user acts in: staff, or their first role group."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff:
        return ROLE_STAFF
    names = {group.name for group in user.groups.all()}
    for role in (ROLE_WAREHOUSE, ROLE_RIDER, ROLE_CUSTOMER):
        if role in names:
            return role
    return None
