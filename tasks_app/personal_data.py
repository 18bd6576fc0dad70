"""Everything stored about a person: export it, or erase it (GDPR articles 15 and 17).

Export gathers the assignee, their identities, every row that points at them
(tasks, plans, routing decisions — found through the model's reverse relations,
so tables added later are included without changes here) and the audit entries
about them. Erase anonymizes the person in place, so task history stays whole:
tasks keep pointing at the same (now anonymous) assignee, identities are
removed, and the audit entries that held the old name, email or provider user
ids are scrubbed. Both are themselves audited, without the personal data.
"""

from __future__ import annotations

from typing import Any

from django.core import serializers
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q

from archangel.audit.context import Entry, record
from archangel.audit.models import AuditEntry
from archangel.errors import NotFound
from tasks_app.models import Assignee

ASSIGNEE = "tasks_app.assignee"
IDENTITY = "tasks_app.assigneeidentity"


def _person(email: str) -> Assignee:
    person = Assignee.objects.filter(email__iexact=email.strip()).first()
    if person is None:
        raise NotFound(f"No assignee with email {email!r}.")
    return person


def _audit_about(person: Assignee, identity_ids: list[str]) -> Q:
    return Q(object_type=ASSIGNEE, object_id=str(person.id)) | Q(object_type=IDENTITY, object_id__in=identity_ids)


def person_export(*, email: str) -> dict[str, Any]:
    person = _person(email)
    related: dict[str, list[dict]] = {}
    for relation in Assignee._meta.related_objects:
        accessor = relation.get_accessor_name()
        if relation.one_to_one:
            rows = [getattr(person, accessor)] if hasattr(person, accessor) else []
        else:
            rows = list(getattr(person, accessor).all())
        related[relation.related_model._meta.label_lower] = serializers.serialize("python", rows)
    identity_ids = [str(i.pk) for i in person.identities.all()]
    audit = list(
        AuditEntry.objects.filter(_audit_about(person, identity_ids))
        .order_by("at")
        .values("at", "actor", "source", "action", "object_type", "object_id", "changes")
    )
    record([Entry("export", ASSIGNEE, str(person.id), "personal data exported")])
    return {
        "assignee": serializers.serialize("python", [person])[0],
        "related": related,
        "audit": audit,
    }


def person_erase(*, email: str) -> Assignee:
    with transaction.atomic():
        person = Assignee.objects.select_for_update().get(pk=_person(email).pk)
        identity_ids = [str(pk) for pk in person.identities.values_list("pk", flat=True)]
        short = str(person.id)[:8]
        person.identities.all().delete()
        person.name = f"Erased person {short}"
        person.email = f"erased-{person.id}@erased.invalid"
        person.active = False
        person.save()
        # The audit entries about the person held their name, email and provider user ids.
        AuditEntry.objects.filter(_audit_about(person, identity_ids)).update(changes={}, object_repr="")
        record(
            [Entry("erase", ASSIGNEE, str(person.id), person.name, {"erased": [None, ["name", "email", "identities"]]})]
        )
    return person


def as_json(data: dict) -> str:
    import json

    return json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False)
