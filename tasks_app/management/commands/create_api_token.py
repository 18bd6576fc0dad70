"""Create (or show) a user's API token with a role: read-only, writer or operator."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction
from rest_framework.authtoken.models import Token

from archangel.permissions import OPERATOR_GROUP, READ_ONLY_GROUP, ROLES


class Command(BaseCommand):
    help = "Create a user (if needed) with the given role and print its API token."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--role", choices=ROLES, default="writer")

    def handle(self, *args, username, role, **options):
        with transaction.atomic():
            user, _ = get_user_model().objects.get_or_create(username=username)
            groups = {name: Group.objects.get_or_create(name=name)[0] for name in (READ_ONLY_GROUP, OPERATOR_GROUP)}
            user.groups.remove(*groups.values())
            if role == "read-only":
                user.groups.add(groups[READ_ONLY_GROUP])
            elif role == "operator":
                user.groups.add(groups[OPERATOR_GROUP])
            token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
