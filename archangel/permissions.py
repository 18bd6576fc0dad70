"""API roles.

- **read-only**: members of the ``read-only`` group may only read (GET, HEAD, OPTIONS).
- **writer** (the default): may also create and change tasks, assignees and clients.
- **operator**: staff users and members of the ``operators`` group; they alone change
  providers, requeue or force-process outbox events and register webhooks.

Tokens belong to users, so a token's role is its user's: ``manage.py create_api_token
USER --role read-only|writer|operator`` makes one.
"""

from rest_framework.permissions import SAFE_METHODS, IsAuthenticated

READ_ONLY_GROUP = "read-only"
OPERATOR_GROUP = "operators"
ROLES = ("read-only", "writer", "operator")


def user_role(user) -> str:
    """The role of ``user``; cached on the object (the token cache fills it in too)."""
    role = getattr(user, "_archangel_role", None)
    if role is None:
        role = role_from_db(user)
        user._archangel_role = role
    return role


def role_from_db(user) -> str:
    if user.is_staff or user.is_superuser:
        return "operator"
    names = set(user.groups.values_list("name", flat=True))
    if OPERATOR_GROUP in names:
        return "operator"
    if READ_ONLY_GROUP in names:
        return "read-only"
    return "writer"


class RolePermission(IsAuthenticated):
    """Authenticated; read-only users only read. The default for every endpoint."""

    message = "This token is read-only."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in SAFE_METHODS or user_role(request.user) != "read-only"


class IsOperator(RolePermission):
    """For operations that change how the system delivers: only operators may write."""

    message = "Only operators may do this."

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        return request.method in SAFE_METHODS or user_role(request.user) == "operator"


class OperatorOnly(RolePermission):
    """Operators only, reads included (the audit log names people and what they did)."""

    message = "Only operators may do this."

    def has_permission(self, request, view):
        return super().has_permission(request, view) and user_role(request.user) == "operator"
