"""The roles a user acts in (DESIGN.md section 3): Django groups, and staff."""

from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Case, OuterRef, QuerySet, Subquery, Value, When

ROLE_STAFF = "staff"
ROLE_CUSTOMER = "customer"
ROLE_RIDER = "rider"
ROLE_WAREHOUSE = "warehouse"
ALL_ROLES = (ROLE_CUSTOMER, ROLE_RIDER, ROLE_WAREHOUSE, ROLE_STAFF)
# A user in several role groups acts in the first of these.
GROUP_ROLES = (ROLE_WAREHOUSE, ROLE_RIDER, ROLE_CUSTOMER)


def users_with_role_group(users: QuerySet) -> QuerySet:
    """`users` with `role_group` annotated: their first role group's name, so `user_role` needs no query."""
    priority = Case(*(When(name=role, then=Value(rank)) for rank, role in enumerate(GROUP_ROLES)))
    first = Group.objects.filter(user=OuterRef("pk"), name__in=GROUP_ROLES).order_by(priority).values("name")[:1]
    return users.annotate(role_group=Subquery(first))


def user_role(user: AbstractBaseUser) -> str | None:
    """The role a user acts in: staff, or their first role group."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.is_staff:
        return ROLE_STAFF
    if hasattr(user, "role_group"):  # loaded through users_with_role_group
        return user.role_group
    names = {group.name for group in user.groups.all()}
    for role in GROUP_ROLES:
        if role in names:
            return role
    return None
