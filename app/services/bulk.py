"""Bulk writes: many rows of one table in one round trip, in the caller's transaction.

PostgreSQL: COPY ... FROM STDIN through psycopg (ids drawn from the table's sequence
first when the caller needs them); elsewhere, and for a few rows, one executemany INSERT
(RETURNING the ids when needed). Column defaults and type conversions (enums, JSON, UTC timestamps) are
applied here as a Core INSERT applies them, so a row reads back the same either way.
Use it for the hot paths that write hundreds of rows per transaction (issuance batches,
their audit events and mails); everything else keeps the ORM.
"""

from __future__ import annotations

import functools
import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, MetaData, Table, any_, bindparam, insert, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db

_Processor = Callable[[Any], Any] | None
# Up to this many rows an INSERT (RETURNING the ids) is cheaper on PostgreSQL too: one round
# trip, where COPY takes two (and drawing ids first a third). One REST API enroll writes one
# serial, one certificate, its mail and its audit events (docs/benchmarks.md).
FEW_ROWS = 8


def insert_rows(
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    return_ids: bool = False,
    session: Session | None = None,
) -> list[int]:
    """Insert ``rows`` (all with the same keys) into ``table``; the new ids in row order
    when ``return_ids`` (else an empty list).

    Raises:
        sqlalchemy.exc.IntegrityError (or psycopg's error on COPY, wrapped likewise):
            a constraint failed; the transaction is then unusable, as with any INSERT.
    """
    if not rows:
        return []
    session = session if session is not None else db.session()
    connection = session.connection()
    if (
        connection.dialect.name == "postgresql"
        and connection.dialect.driver == "psycopg"
        and len(rows) > FEW_ROWS
    ):
        return _copy(connection, table, rows, return_ids)
    if return_ids:
        statement = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return [row_id for (row_id,) in session.execute(statement, list(rows))]
    session.execute(insert(table), list(rows))
    return []


def _copy(
    connection: Connection, table: Table, rows: Sequence[Mapping[str, Any]], return_ids: bool
) -> list[int]:
    given = frozenset(rows[0])
    if return_ids and "id" in given:
        raise ValueError("rows that carry their own ids cannot also ask for new ones")
    plan = _copy_plan(table, given, return_ids, connection.dialect)
    ids: list[int] = []
    if return_ids:
        ids = list(
            connection.execute(
                text(
                    "SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
                    "FROM generate_series(1, :count)"
                ),
                {"table": table.name, "count": len(rows)},
            ).scalars()
        )
    driver = connection.connection.driver_connection
    if driver is None:
        raise RuntimeError("the database connection is closed")
    fetch, defaults, processed = plan.fetch, plan.defaults, plan.processed
    with driver.cursor() as cursor, cursor.copy(plan.statement) as copy:
        copy.set_types(plan.types)
        write = copy.write_row
        for index, row in enumerate(rows):
            # The plan orders the columns: [new id], the row's own keys, then defaults.
            values = [ids[index]] if return_ids else []
            values.extend(fetch(row))
            values.extend([default() for default in defaults])
            for position, process in processed:
                values[position] = process(values[position])
            write(values)
    return ids


def among(column: ColumnElement[Any], values: Sequence[Any]) -> ColumnElement[bool]:
    """``column IN values`` for hundreds of values. PostgreSQL: ``column = ANY(:array)``,
    one parameter, so the statement's text is the same every time (psycopg prepares it and
    neither side parses hundreds of placeholders: an IN of 500 cost the client about 5 ms
    to expand and convert, per statement); elsewhere an expanding IN."""
    if db.session().get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=postgresql.ARRAY(column.type)))
    return column.in_(values)


def plan_for_now() -> None:
    """For the rest of the current transaction (PostgreSQL), plan each statement for the
    tables as they are now, not with a prepared statement's cached generic plan.

    psycopg prepares a statement after five runs and PostgreSQL may then keep one generic
    plan for it. Made while a table was nearly empty and never analysed (autovacuum off, or
    not run yet), that plan is a sequential scan, and it stays while a bulk writer fills
    the table: at 100,000 certificates every fingerprint lookup of an import batch read the
    whole table (2.8 ms of wall time per certificate instead of 1.3; docs/benchmarks.md).
    Call it at the start of each transaction of a path that grows a table fast."""
    session = db.session()
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


def insert_ignoring(
    table: Table,
    rows: Sequence[Mapping[str, Any]],
    keys: Sequence[str],
    *,
    returning: str | tuple[str, ...] | None = None,
) -> list[Any]:
    """INSERT ... ON CONFLICT (keys) DO NOTHING for ``rows`` (all with the same keys, no id);
    the ``returning`` column of the rows inserted (empty when not asked), or a tuple of
    values per row inserted when ``returning`` names several columns.

    PostgreSQL: the rows are COPied into a temporary table (kept by the connection, emptied
    at commit) and moved by one INSERT ... SELECT: a multi-row INSERT of hundreds of rows
    spends most of its time building and parsing the statement. Elsewhere one executemany
    INSERT.
    """
    if not rows:
        return []
    session = db.session()
    connection = session.connection()
    conflict = ", ".join(f'"{key}"' for key in keys)
    if connection.dialect.name == "postgresql" and connection.dialect.driver == "psycopg":
        stage = _stage_of(table, frozenset(rows[0]))
        names = ", ".join(f'"{c.name}"' for c in stage.columns)
        # Kept by the connection and emptied at each commit: creating and dropping it in
        # every transaction wrote and deleted its catalog rows each time (three tables per
        # import batch).
        session.execute(
            text(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {stage.name} ON COMMIT DELETE ROWS AS "  # noqa: S608
                f"SELECT {names} FROM {table.name} WITH NO DATA"
            )
        )
        _copy(connection, stage, rows, False)
        columns = (returning,) if isinstance(returning, str) else returning or ()
        tail = " RETURNING " + ", ".join(f'"{c}"' for c in columns) if columns else ""
        moved = session.execute(
            text(
                f"INSERT INTO {table.name} ({names}) SELECT {names} FROM {stage.name} "  # noqa: S608
                # In key order: concurrent writers of overlapping rows lock them in one
                # order, so they wait for each other instead of deadlocking.
                f"ORDER BY {conflict} ON CONFLICT ({conflict}) DO NOTHING{tail}"
            )
        )
        if isinstance(returning, str):
            found = list(moved.scalars())
        else:
            found = [tuple(row) for row in moved] if returning else []
        session.execute(text(f"DELETE FROM {stage.name}"))  # noqa: S608  (for a next call)
        return found
    dialect_insert = postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert
    statement = dialect_insert(table).on_conflict_do_nothing(index_elements=list(keys))
    if isinstance(returning, str):
        return list(
            connection.execute(statement.returning(table.c[returning]), list(rows)).scalars()
        )
    if returning:
        wanted = [table.c[c] for c in returning]
        return [tuple(row) for row in connection.execute(statement.returning(*wanted), list(rows))]
    connection.execute(statement, list(rows))
    return []


@functools.lru_cache(maxsize=32)
def _stage_of(table: Table, given: frozenset[str]) -> Table:
    """``table``'s columns that a COPY of rows with these keys fills (the rows' own and those
    with Python defaults), without constraints, named for its temporary stage table."""
    columns = [
        c._copy()
        for c in table.columns
        if c.key != "id" and (c.key in given or _has_python_default(c))
    ]
    for column in columns:
        column.unique = column.index = column.primary_key = False
        column.foreign_keys = set()
        column.constraints = set()
    # Named for its columns too: one table is staged with different columns by different
    # callers, and a stage outlives its transaction on its connection.
    shape = hashlib.sha256(",".join(c.name for c in columns).encode()).hexdigest()[:8]
    return Table(f"cw_stage_{table.name}_{shape}", MetaData(), *columns)


@dataclass(frozen=True)
class _CopyPlan:
    statement: str
    types: list[str]
    # A row's values in COPY column order: [the new id], fetch(row) (a tuple of the row's
    # own values), then each default(); processed: (position, bind processor) for the
    # columns that have one (enums -> values, JSON -> Json, UTC timestamps), as an INSERT.
    fetch: Callable[[Mapping[str, Any]], tuple[Any, ...]]
    defaults: list[Callable[[], Any]]
    processed: list[tuple[int, Callable[[Any], Any]]]


@functools.lru_cache(maxsize=64)
def _copy_plan(table: Table, given: frozenset[str], return_ids: bool, dialect: Any) -> _CopyPlan:
    own = [c for c in table.columns if c.key in given]
    defaulted = [c for c in table.columns if c.key not in given and _has_python_default(c)]
    columns = [*([table.c.id] if return_ids else []), *own, *defaulted]
    names = ", ".join(dialect.identifier_preparer.quote(c.name) for c in columns)
    keys = [c.key for c in own]
    getter = operator.itemgetter(*keys)
    processors = [_processor(c, dialect) for c in columns]
    return _CopyPlan(
        # Binary COPY: no text escaping of DER bytes on either side.
        statement=f"COPY {table.name} ({names}) FROM STDIN (FORMAT BINARY)",
        types=[_pg_type(c, dialect) for c in columns],
        fetch=getter if len(keys) > 1 else lambda row: (getter(row),),
        defaults=[_default_of(c) for c in defaulted],
        processed=[(i, p) for i, p in enumerate(processors) if p is not None],
    )


# SQL spellings of column types -> PostgreSQL type names psycopg knows, for binary COPY.
_PG_TYPES = {
    "integer": "int4",
    "bigint": "int8",
    "smallint": "int2",
    "boolean": "bool",
    "timestamp with time zone": "timestamptz",
    "timestamp without time zone": "timestamp",
    "double precision": "float8",
}


def _pg_type(column: Any, dialect: Any) -> str:
    spelled = str(column.type.dialect_impl(dialect).compile(dialect=dialect)).lower()
    name = spelled.split("(", 1)[0].strip()
    return _PG_TYPES.get(name, name)


def _has_python_default(column: Any) -> bool:
    default = column.default
    return default is not None and (default.is_scalar or default.is_callable)


def _default_of(column: Any) -> Callable[[], Any]:
    """The Python-side default of a column that has one (see _has_python_default)."""
    default = column.default
    if default.is_callable:
        return lambda: default.arg(None)  # zero-argument callables, wrapped by SQLAlchemy
    value = default.arg
    return lambda: value


def _processor(column: Any, dialect: Any) -> _Processor:
    processor: _Processor = column.type.dialect_impl(dialect).bind_processor(dialect)
    return processor
