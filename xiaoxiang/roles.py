"""The roles a user acts in (DESIGN.md section 3): Django groups, and staff."""

from django.contrib.auth.models import AbstractBaseUser

ROLE_STAFF = "staff"
ROLE_CUSTOMER = "customer"
ROLE_RIDER = "rider"
ROLE_WAREHOUSE = "warehouse"
ALL_ROLES = (ROLE_CUSTOMER, ROLE_RIDER, ROLE_WAREHOUSE, ROLE_STAFF)
# A user in several role groups acts in the first of these.
GROUP_ROLES = (ROLE_WAREHOUSE, ROLE_RIDER, ROLE_CUSTOMER)


def user_role(user: AbstractBaseUser) -> str | None:
    """The role a user acts in: staff, or their first role group."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff:
        return ROLE_STAFF
    if hasattr(user, "role_group"):  # loaded with it (xiaoxiang.auth)
        return user.role_group
    names = {group.name for group in user.groups.all()}
    for role in GROUP_ROLES:
        if role in names:
            return role
    return None
