"""Lean multi-row INSERT and COPY for the ingest hot path.

Django's ``bulk_create`` cannot say which rows an ``ON CONFLICT DO NOTHING`` skipped
on PostgreSQL, and its per-call overhead dominated single creates. This builds one
``INSERT ... VALUES (...), (...) [ON CONFLICT DO NOTHING] RETURNING pk`` from the
model's own field definitions (so values are prepared as the ORM would), and works
on PostgreSQL and SQLite (3.35+ for RETURNING).

On PostgreSQL the rows travel as one array per column (``SELECT * FROM unnest(...)``)
with server-side binding: a statement of ~20,000 placeholders cost more to parse and
quote in Python than the insert took in the database.

``one_statement()`` sends the small inserts made inside it (the rows that go with a single
create: its audit entry, outbox event and routing decision) as one statement when the block
ends, each a data-modifying ``WITH`` of it: one round trip instead of three.

``copy_rows()`` / ``copy_objs()`` write with PostgreSQL's ``COPY ... FROM STDIN`` for a bulk
import (``tasks_app.services``, "bulk: the COPY path"): the cheapest way in for many rows, but it
cannot skip a conflicting one, so the caller makes sure there is none.
"""

import contextlib
import contextvars
import datetime as dt
import functools
import json
import time
import uuid
from collections.abc import Iterator, Sequence
from operator import attrgetter, itemgetter

from django.db import connections, models, router
from django.dispatch import Signal
from django.utils import timezone

# Sent with the rows insert_rows actually wrote (sender = the model), since a raw INSERT
# fires no post_save: the audit log listens.
rows_inserted = Signal()

# PostgreSQL accepts 65,535 bind parameters per statement; SQLite 32,766.
MAX_PARAMS = 30_000
# Values psycopg adapts natively; on PostgreSQL they skip the field's get_db_prep_save
# (whose per-value checks were a tenth of a bulk insert's time).
_NATIVE = (str, bool, int, uuid.UUID)
# The statements deferred by the innermost one_statement() block, if any.
_deferred: contextvars.ContextVar["_Batch | None"] = contextvars.ContextVar("archangel_deferred_inserts", default=None)
# Rows above which an insert is sent at once (unnest, server-side binding) even inside one_statement().
DEFER_MAX_ROWS = 20


class LeadSkipped(Exception):
    """The lead row of a ``one_statement()`` block was skipped by ``ON CONFLICT DO NOTHING``,
    so nothing of the block was written. Raised as the block ends: a transaction around it rolls
    back, and the ``on_commit`` callbacks registered for the rows that were not written go with
    it."""


class _Batch:
    def __init__(self) -> None:
        self.rows: list[tuple[str, list]] = []  # (INSERT ... VALUES ..., client-side %s parameters)
        self.lead: tuple[str, list] | None = None  # INSERT ... ON CONFLICT DO NOTHING RETURNING pk


@contextlib.contextmanager
def one_statement(using: str = "default", *, ends_transaction: bool = False) -> Iterator[None]:
    """Send the inserts ``defer()``-ed inside the block (``insert_rows`` of a few rows without
    ``skip_conflicts``, audit entries) together, as one statement, when the block ends without
    an error; must run inside a transaction. Reads and the other writes in the block run at
    once, as usual. On anything but PostgreSQL (no data-modifying ``WITH``) nothing is deferred.

    The deferred rows are not in the database until the block ends: nothing inside the block
    may read them back (constraints that refer to them are checked at the end, and foreign
    keys, deferred, at commit).

    With a lead row (``insert_rows([obj], skip_conflicts=True, lead=True)``, at most one per
    block) every other deferred row is written only if the lead is (``INSERT ... SELECT ...
    FROM lead``), and the block raises :class:`LeadSkipped` when it was not. That statement is
    sent with server-side binding (``psycopg.RawCursor``): psycopg passes the values in C
    instead of quoting every one of them into the SQL text in Python.

    ``ends_transaction``: the caller promises that nothing runs in the transaction after the
    block (it ends with the block). Then, when the block's statement would be the first and only
    thing its outermost transaction sends, it is sent in autocommit mode: PostgreSQL runs one
    statement atomically anyway, and psycopg has no ``BEGIN`` and no ``COMMIT`` to send (it
    sends ``BEGIN`` with the first statement and skips a ``COMMIT`` when none was sent): one
    round trip instead of three. Django's transaction is untouched (its ``on_commit`` callbacks
    run when it ends, and are dropped if it rolls back, e.g. on :class:`LeadSkipped`).
    """
    connection = connections[using]
    if connection.vendor != "postgresql" or _deferred.get() is not None:
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("one_statement() defers writes to the end of the block: use it inside a transaction")
    batch = _Batch()
    token = _deferred.set(batch)
    try:
        yield
    finally:
        _deferred.reset(token)
    if batch.lead is not None:
        sql, params = _lead_statement(batch.lead, batch.rows)
        with _raw_cursor_wrapper(connection) as cursor:
            with _alone(connection, ends_transaction):
                cursor.execute(sql, params)
            if not cursor.fetchall():
                raise LeadSkipped
        return
    if not batch.rows:
        return
    *ctes, (last_sql, last_params) = batch.rows
    sql = "WITH " + ", ".join(f"w{i} AS ({q})" for i, (q, _) in enumerate(ctes)) + " " + last_sql if ctes else last_sql
    params = [p for _, ps in ctes for p in ps] + list(last_params)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


@contextlib.contextmanager
def _alone(connection, ends_transaction: bool) -> Iterator[None]:
    """Autocommit for the statement run inside, when it is all its transaction does (see
    ``one_statement(ends_transaction=True)``): the outermost atomic block, and nothing sent in it
    yet (psycopg's transaction status is idle). A test's transaction, or an Idempotency-Key's
    that has already read, is never bypassed: the statement then runs inside it."""
    import psycopg

    raw = connection.connection
    if not (
        ends_transaction
        and len(connection.atomic_blocks) == 1
        and not connection.needs_rollback
        and raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    ):
        yield
        return
    raw.autocommit = True
    try:
        yield
    finally:
        # Idle again: the statement committed, or failed and rolled back. A connection the server
        # dropped is not idle, cannot be switched, and is closed by Django as the request ends:
        # the statement's own error is the one to report.
        if raw.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            raw.autocommit = False


def _lead_statement(lead: tuple[str, list], rows: list[tuple[str, list]]) -> tuple[str, list]:
    """``WITH lead AS (INSERT ... RETURNING pk), w0 AS (INSERT INTO t (...) SELECT %s, ...
    FROM lead), ... SELECT * FROM lead``, with ``$n`` placeholders: each deferred row becomes an
    ``INSERT ... SELECT`` that yields a row only when the lead wrote one. (``INSERT ... SELECT``
    types its untyped parameters by the target columns, as ``VALUES`` does; a ``VALUES`` list in
    a subquery would type them as text.)"""
    ctes, params = [f"lead AS ({lead[0]})"], list(lead[1])
    for sql, row_params in rows:
        head, _, values = sql.partition(" VALUES ")
        values, _, _returning = values.partition(" RETURNING ")  # nothing reads it inside the WITH
        row = values[: values.index(")") + 1]
        width = row.count("%s")
        if not width or values != ", ".join([row] * (len(row_params) // width)):
            raise ValueError(f"not a deferrable INSERT ... VALUES: {sql[:80]!r}")
        for start in range(0, len(row_params), width):
            # Only placeholders and the caller's own INSERT head (identifiers from model meta).
            ctes.append(f"w{len(ctes) - 1} AS ({head} SELECT {row[1:-1]} FROM lead)")  # noqa: S608
            params += row_params[start : start + width]
    return _numbered("WITH " + ", ".join(ctes) + " SELECT * FROM lead"), params  # noqa: S608


@functools.lru_cache(maxsize=64)
def _numbered(sql: str) -> str:
    """``%s`` placeholders as PostgreSQL's own ``$1, $2...``, for ``psycopg.RawCursor``: psycopg
    parses a ``%s`` statement again on every execution once it has more than 50 parameters
    (a create's statement has about 70), and that parse cost more than the statement's round
    trip. The statement's few shapes are converted once each."""
    parts = sql.split("%s")
    return "".join(part + (f"${i}" if i < len(parts) else "") for i, part in enumerate(parts, 1))


def defer(sql: str, params: list) -> bool:
    """Queue one ``INSERT ... VALUES (%s, ...)[, (...)]`` (client-side ``%s`` parameters, one
    placeholder group per row) for the enclosing ``one_statement()``; False when there is none
    (the caller runs it now)."""
    batch = _deferred.get()
    if batch is None:
        return False
    batch.rows.append((sql, params))
    return True


def insert_rows(objs: Sequence[models.Model], *, skip_conflicts: bool = False, lead: bool = False) -> set:
    """Insert ``objs`` (primary keys already set) and return the pks actually written.

    With ``skip_conflicts`` a row that would violate any unique constraint is skipped
    instead of failing the statement; the caller learns which by the missing pks.
    ``auto_now``/``auto_now_add`` fields are filled in as ``save()`` would.

    ``lead`` (one row, with ``skip_conflicts``), inside ``one_statement()`` on PostgreSQL: the
    row is sent with the block's other rows, which are written only if it is; its pk is returned
    as written, and the block raises :class:`LeadSkipped` at its end if it was skipped.
    Elsewhere the row is inserted now, as without ``lead``.
    """
    if lead and (len(objs) != 1 or not skip_conflicts):
        raise ValueError("a lead is one row inserted with skip_conflicts")
    if not objs:
        return set()
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    postgres = connection.vendor == "postgresql"
    fields, table, columns, placeholder, returning, *access = _statement_parts(model, connection)
    pk = model._meta.pk
    suffix = (" ON CONFLICT DO NOTHING" if skip_conflicts else "") + returning
    per_statement = max(1, MAX_PARAMS // len(fields))

    def column(field, plain, native, rows):
        values = list(map(attrgetter(field.attname), rows)) if plain else [field.pre_save(o, add=True) for o in rows]
        if not postgres:
            return [field.get_db_prep_save(v, connection) for v in values]
        return [
            v
            if v is None or type(v) in native or (type(v) is dt.datetime and v.tzinfo is not None)
            else field.get_db_prep_save(v, connection)
            for v in values
        ]

    written: set = set()
    with connection.cursor() as cursor:
        if postgres and len(objs) > 20:
            # %b: arrays travel in binary, sparing psycopg a text escape of every element.
            casts = ", ".join(f"%b::{_array_type(f, connection)}" for f in fields)
            # Identifiers come from the model's meta, values travel as parameters.
            sql = f"INSERT INTO {table} ({columns}) SELECT * FROM unnest({casts}){suffix}"  # noqa: S608
            arrays = [column(*spec, objs) for spec in zip(fields, *access, strict=True)]
            raw = _server_binding_cursor(connection)
            try:
                # Database errors become Django's (IntegrityError, OperationalError...), as
                # they would through the ORM, so callers can catch them the usual way.
                with connection.wrap_database_errors:
                    raw.execute(sql, arrays)
                    written.update(row[0] for row in raw.fetchall())
            finally:
                raw.close()
        else:
            # A few rows (a single create): plain VALUES is cheaper than unnest.
            for start in range(0, len(objs), per_statement):
                chunk = objs[start : start + per_statement]
                if len(chunk) == 1:
                    params = _row_params(chunk[0], fields, *access, postgres, connection)
                else:
                    cols = [column(*spec, chunk) for spec in zip(fields, *access, strict=True)]
                    params = [value for row in zip(*cols, strict=True) for value in row]
                values = ", ".join([placeholder] * len(chunk))
                sql = f"INSERT INTO {table} ({columns}) VALUES {values}{suffix}"  # noqa: S608
                if not skip_conflicts and len(objs) <= DEFER_MAX_ROWS and defer(sql, params):
                    # Sent with the enclosing one_statement(); a failure raises there.
                    written.update(obj.pk for obj in chunk)
                    continue
                if lead and (batch := _deferred.get()) is not None:
                    if batch.lead is not None:
                        raise RuntimeError("one_statement() takes one lead row")
                    batch.lead = (sql, params)
                    written.update(obj.pk for obj in chunk)  # or LeadSkipped when the block ends
                    continue
                cursor.execute(sql, params)
                written.update(pk.to_python(row[0]) for row in cursor.fetchall())
    for obj in objs:
        if obj.pk in written:
            obj._state.adding = False
            obj._state.db = connection.alias
    if written and rows_inserted.has_listeners(model):
        rows_inserted.send(sender=model, objs=[obj for obj in objs if obj.pk in written])
    return written


def copy_rows(model: type[models.Model], columns: Sequence[str], rows: Sequence[Sequence]) -> int:
    """Write ``rows`` (one tuple per row, values in ``columns`` order) into ``model``'s table with
    PostgreSQL's ``COPY ... FROM STDIN``, in the caller's transaction; returns the rows written.

    The bulk import's writer: ``COPY`` takes rows with the least work on both sides (no statement
    to parse, no placeholders, no arrays to build), but it cannot skip a row, so the caller makes
    sure none conflicts; a constraint violation fails the whole statement (and so the
    transaction or savepoint) with Django's ``IntegrityError``. Values go as they are: JSON as
    its text (``json.dumps``), every other value a type psycopg adapts (str, int, float, bool,
    Decimal, UUID, aware datetime, None). Fires no signal: see ``copy_objs`` for instances.
    """
    if not rows:
        return 0
    connection = connections[router.db_for_write(model)]
    if connection.vendor != "postgresql":
        raise RuntimeError("copy_rows() needs PostgreSQL")
    quote = connection.ops.quote_name
    # Identifiers come from the model's meta, values travel in the COPY stream.
    sql = f"COPY {quote(model._meta.db_table)} ({', '.join(map(quote, columns))}) FROM STDIN"
    started = time.monotonic()
    connection.ensure_connection()
    with connection.wrap_database_errors, connection.connection.cursor() as cursor, cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)
    if connection.queries_logged:
        # Counted like any other statement (CaptureQueriesContext, the debug toolbar).
        seconds = time.monotonic() - started
        connection.queries_log.append({"sql": f"{sql} -- {len(rows)} rows", "time": f"{seconds:.3f}"})
    return len(rows)


def copy_objs(objs: Sequence[models.Model]) -> None:
    """Write model instances (pks set, every attribute present) with ``copy_rows`` and announce
    them with ``rows_inserted``, as ``insert_rows`` does (the audit log, routing's open load).

    ``auto_now``/``auto_now_add`` fields keep a value that is set (one ``now`` for a whole
    import, chosen by the caller) and get the time of the call when None; other fields are
    written as they are, JSON fields through their encoder."""
    if not objs:
        return
    model = type(objs[0])
    connection = connections[router.db_for_write(model)]
    fields = [f for f in model._meta.concrete_fields if not f.generated]
    getter = itemgetter(*(f.attname for f in fields))
    json_columns = [(i, f.encoder) for i, f in enumerate(fields) if isinstance(f, models.JSONField)]
    stamped = [f.attname for f in fields if isinstance(f, models.DateField) and (f.auto_now or f.auto_now_add)]
    now = None
    rows = []
    for obj in objs:
        values = obj.__dict__
        for name in stamped:
            if values[name] is None:
                values[name] = now = now or timezone.now()
        row = list(getter(values))
        for i, encoder in json_columns:
            if row[i] is not None:  # None is SQL NULL, as the ORM writes it
                row[i] = json.dumps(row[i], cls=encoder)
        rows.append(row)
    copy_rows(model, [f.column for f in fields], rows)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    if rows_inserted.has_listeners(model):
        rows_inserted.send(sender=model, objs=list(objs))


def _row_params(obj, fields, plains, natives, postgres: bool, connection) -> list:
    """One row's values, prepared as ``insert_rows``' columns prepare them: a single create's
    task, event and decision each went through a column builder per field (twenty lists and
    attrgetters for one value each)."""
    params = []
    for field, plain, native in zip(fields, plains, natives, strict=True):
        value = getattr(obj, field.attname) if plain else field.pre_save(obj, add=True)
        if postgres and (
            value is None or type(value) in native or (type(value) is dt.datetime and value.tzinfo is not None)
        ):
            params.append(value)
        else:
            params.append(field.get_db_prep_save(value, connection))
    return params


_parts: dict[tuple, tuple] = {}


def _statement_parts(model, connection) -> tuple[list, str, str, str, str]:
    """What a model's INSERT needs besides its values (fields, table, column list, one row's
    placeholder, the RETURNING clause), built once per model and database: quoting twenty
    column names for every single create was a measurable share of it."""
    key = (model, connection.alias, connection.vendor)
    parts = _parts.get(key)
    if parts is None:
        fields = [f for f in model._meta.concrete_fields if not f.generated]
        quote = connection.ops.quote_name
        parts = _parts[key] = (
            fields,
            quote(model._meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            "(" + ", ".join(["%s"] * len(fields)) + ")",
            f" RETURNING {quote(model._meta.pk.column)}",
            # Whether the value is the attribute itself (no auto_now, no other pre_save), read
            # with one attrgetter per column instead of a pre_save call per value.
            [_plain(f) for f in fields],
            # Python types psycopg takes as they are for this column, skipping get_db_prep_save.
            [(*_NATIVE, float) if isinstance(f, models.FloatField) else _NATIVE for f in fields],
        )
    return parts


def _plain(field) -> bool:
    if isinstance(field, models.DateField):
        return not (field.auto_now or field.auto_now_add) and type(field).pre_save in (
            models.DateField.pre_save,
            models.DateTimeField.pre_save,
        )
    return type(field).pre_save is models.Field.pre_save


def _array_type(field, connection) -> str:
    # varchar(n)/numeric(p,s) arrays are cast by the column's own type on insert.
    base = field.db_type(connection).split("(")[0].strip()
    return f"{base}[]"


def _raw_cursor_wrapper(connection):
    """A ``psycopg.RawCursor`` (server-side binding, ``$n`` placeholders) on Django's connection,
    wrapped as Django wraps its own cursors: the statement is logged (and counted by tests) and
    its errors are Django's."""
    import psycopg

    connection.ensure_connection()
    raw = psycopg.RawCursor(connection.connection)
    return connection.make_debug_cursor(raw) if connection.queries_logged else connection.make_cursor(raw)


def _server_binding_cursor(connection, *, binary: bool = False):
    """A plain psycopg cursor on Django's connection (same transaction as everything else
    Django does), with server-side binding. ``binary``: results come in binary and are parsed
    by psycopg's C loaders, not by the text loaders Django registers (its ``timestamptz``
    loader is Python)."""
    import psycopg

    cursor = psycopg.Cursor(connection.connection)
    if binary:
        cursor.format = psycopg.pq.Format.BINARY
    return cursor


def is_retryable_conflict(exc: Exception) -> bool:
    """A deadlock or serialization failure: the transaction can simply be run again."""
    return getattr(exc.__cause__, "sqlstate", None) in {"40P01", "40001"}
