"""Automatic audit entries for every save and delete of the models operators care about.

The values a row had when loaded are kept on the instance (``post_init``, from
its ``__dict__`` only, so deferred fields are never fetched) and compared at
``post_save``; rows written in bulk by ``archangel.db.insert_rows`` are
recorded through the ``rows_inserted`` signal. Derived fields refreshed by jobs
in bulk (scores) are not audited row by row.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

from django.apps import apps
from django.db.models.signals import post_delete, post_init, post_save

from archangel.audit.context import Entry, _jsonable, masked, record
from archangel.db import rows_inserted

AUDITED = [
    "tasks_app.Task",
    "tasks_app.Client",
    "tasks_app.Assignee",
    "tasks_app.AssigneeIdentity",
    "providers_app.Provider",
    "django_celery_beat.PeriodicTask",
    "authtoken.Token",
]
# Bookkeeping that changes with every write and says nothing an operator needs.
SKIPPED = frozenset(
    {"created_at", "updated_at", "fingerprint", "version", "last_run_at", "total_run_count", "date_changed"}
)
# Values never written to the log, only the fact that they changed.
SECRET = frozenset({"secrets", "key", "password"})

_SNAPSHOT = "_audit_loaded"
# Models whose text may hold a credential (provider settings, token keys, a beat job's arguments):
# their values also pass the log masker's patterns. The others' values are business data, where
# running every pattern over every title of a 1,000-task import cost more than the import.
SECRET_BEARING = frozenset({"providers_app.provider", "authtoken.token", "django_celery_beat.periodictask"})


def _value(label: str, name: str, value):
    return masked(name, value, secret_fields=SECRET) if label in SECRET_BEARING else _jsonable(value)


_FIELDS: dict[type, list[str]] = {}


def _fields(model) -> list[str]:
    # Per model, once: every instance loaded (post_init) and every row imported asks.
    names = _FIELDS.get(model)
    if names is None:
        names = _FIELDS[model] = [f.attname for f in model._meta.concrete_fields if f.attname not in SKIPPED]
    return names


def _snapshot(sender, instance, **kwargs) -> None:
    values = instance.__dict__
    instance.__dict__[_SNAPSHOT] = {name: values[name] for name in _fields(sender) if name in values}


def _label(instance) -> str:
    return f"{instance._meta.app_label}.{instance._meta.model_name}"


def _object_id(instance) -> str:
    return str(instance.pk) if instance._meta.model_name != "token" else str(instance.user_id)


def _repr(instance) -> str:
    return "" if instance._meta.model_name == "token" else str(instance)


def _created(instance) -> dict:
    values = instance.__dict__
    label = _label(instance)
    pk = instance._meta.pk.attname
    if label in SECRET_BEARING:
        return {
            name: [None, _value(label, name, values[name])]
            for name in _fields(type(instance))
            if name in values and values[name] not in (None, "", {}, []) and name != pk
        }
    # Business data (a 1,000-task import): straight to JSON-able values, no masking to decide;
    # the common types converted by one look-up (a 1,000-task import converts 12,000 values).
    changes = {}
    for name in _fields(type(instance)):
        value = values.get(name, None)
        if value is None or name == pk or (not value and isinstance(value, str | dict | list)):
            continue
        kind = type(value)
        changes[name] = [
            None,
            value if kind in _AS_IS else _CONVERT[kind](value) if kind in _CONVERT else _jsonable(value),
        ]
    return changes


# What _jsonable does to each of these exact types (any other type, a subclass too, goes through it).
_AS_IS = frozenset({str, int, float, bool, dict, list})
_CONVERT = {dt.datetime: dt.datetime.isoformat, dt.date: dt.date.isoformat, uuid.UUID: str, decimal.Decimal: float}


def _saved(sender, instance, created, raw=False, **kwargs) -> None:
    if raw:  # loaddata
        return
    if created:
        changes, action = _created(instance), "create"
    else:
        before = instance.__dict__.get(_SNAPSHOT, {})
        values = instance.__dict__
        changes = {
            name: [
                masked(name, before.get(name), secret_fields=SECRET),
                masked(name, values[name], secret_fields=SECRET),
            ]
            for name in _fields(sender)
            if name in values and name in before and before[name] != values[name]
        }
        if not changes:
            return
        action = "update"
    record([Entry(action, _label(instance), _object_id(instance), _repr(instance), changes)])
    _snapshot(sender, instance)


def _deleted(sender, instance, **kwargs) -> None:
    record([Entry("delete", _label(instance), _object_id(instance), _repr(instance))])


def _bulk_inserted(sender, objs, **kwargs) -> None:
    record([Entry("create", _label(obj), _object_id(obj), _repr(obj), _created(obj)) for obj in objs])
    # As after a save: a later save of these instances is compared with what was inserted, not
    # with the values they had when built (a bulk create routes its tasks in between).
    for obj in objs:
        _snapshot(sender, obj)


def connect() -> None:
    for name in AUDITED:
        model = apps.get_model(name)
        uid = f"audit:{name}"
        post_init.connect(_snapshot, sender=model, dispatch_uid=uid, weak=False)
        post_save.connect(_saved, sender=model, dispatch_uid=uid, weak=False)
        post_delete.connect(_deleted, sender=model, dispatch_uid=uid, weak=False)
        rows_inserted.connect(_bulk_inserted, sender=model, dispatch_uid=uid, weak=False)
