"""A report batch's device rows in one UPDATE on PostgreSQL.

An executemany of the writer's UPDATE is one statement per report: psycopg
sends them down a pipeline, dumping and checking each one in Python, and the
server plans and runs each on its own. That cost a paced PostgreSQL hub more
CPU than everything else the writer did (about 140 µs of the hub's per
report at 1,000 reports/s, py-spy, BENCHMARKS.md). Here the batch travels as
one JSON document, made by the json module's C encoder, and the server turns
it into rows with `json_to_recordset`: one statement whatever the batch's
size, the devices found by their primary key (the ids are a second, small
document: joined to the function's rows alone, the planner hashes them
against a scan of the whole table, 0.5 ms at 3,000 devices and growing with
the fleet). (One array per column was slower than the
executemany: psycopg escapes each element of a text array in Python.)

`UPDATE … FROM` updates a row once even when the source names it twice, and
which source row wins is not defined, so a device twice in one batch (a
retried report) is written in rounds: every device's first report, then
the second ones, in the order they came.

The values are the ones the executemany binds, converted as SQLAlchemy's
types would convert them: a JSON column's value is the same text
(`json.dumps` of it, what psycopg's JSON dumper sends: a `json` field of
the record keeps the text it was given), datetimes naive UTC, as ISO 8601.
"""

import datetime as dt
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import Any, Final, cast

from sqlalchemy import JSON, Connection, Table, TypeDecorator, text
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.elements import TextClause

from ._schema import DeviceRow

_DEVICES: Final = cast(Table, DeviceRow.__table__)
ID_KEY: Final = "b_id"  # the row's device id
CERT_KEY: Final = "b_cert"  # the certificate the report came with


def update_devices_pg(connection: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    """The writer's device UPDATE for `rows` (each: b_id, b_cert and the
    columns it sets, the same columns in every row), on PostgreSQL.

    A report with the device's current certificate ends the one it renewed
    from (prev_cert_serial), decided on the row as the UPDATE finds it, as
    the executemany's CASE does.
    """
    if not rows:
        return
    columns = tuple(key for key in rows[0] if key not in (ID_KEY, CERT_KEY))
    keys = rows[0].keys()
    if any(row.keys() != keys for row in rows):  # a column left out would go unwritten
        raise ValueError("update_devices_pg: every row must set the same columns")
    statement = _statement(columns, connection.dialect)
    converters = [(name, _converter(name, connection.dialect)) for name in columns]
    for round_ in _rounds(rows):
        records = [
            {
                ID_KEY: row[ID_KEY],
                CERT_KEY: row[CERT_KEY],
                **{name: convert(row[name]) for name, convert in converters},
            }
            for row in round_
        ]
        ids = json.dumps([row[ID_KEY] for row in round_])
        connection.execute(statement, {"rows": json.dumps(records), "ids": ids})


def _rounds(rows: Sequence[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """`rows` split so that no device is twice in a round, each device's rows
    in their order: round k holds every device's k-th row."""
    rounds: list[list[Mapping[str, Any]]] = []
    seen: dict[str, int] = {}
    for row in rows:
        k = seen.get(row[ID_KEY], 0)
        seen[row[ID_KEY]] = k + 1
        if k == len(rounds):
            rounds.append([])
        rounds[k].append(row)
    yield from rounds


def _converter(name: str, dialect: Dialect) -> Callable[[Any], Any]:
    """A column's value as the record's JSON carries it."""
    column_type = _DEVICES.c[name].type
    if isinstance(column_type, JSON):
        return _same  # nested in the document: the same text json.dumps makes of it
    if isinstance(column_type, TypeDecorator):
        decorator = column_type

        def bound(value: Any) -> Any:
            value = decorator.process_bind_param(value, dialect)
            return value.isoformat() if isinstance(value, dt.datetime | dt.date) else value

        return bound
    return _same


def _same(value: Any) -> Any:
    return value


@lru_cache(maxsize=8)
def _statement(columns: tuple[str, ...], dialect: Dialect) -> TextClause:
    """UPDATE devices … FROM json_to_recordset(the batch): built once per
    set of columns."""
    if getattr(dialect, "_json_serializer", None) is not None:
        raise TypeError("update_devices_pg writes JSON columns as json.dumps does")
    fields = [(ID_KEY, _DEVICES.c.id.type), (CERT_KEY, _DEVICES.c.cert_serial.type)]
    fields += [(name, _DEVICES.c[name].type) for name in columns]
    record = ", ".join(f"{name} {_field_type(t, dialect)}" for name, t in fields)
    sets = [f"{name} = v.{name}" for name in columns]
    sets.append(
        f"prev_cert_serial = CASE WHEN devices.cert_serial = v.{CERT_KEY} THEN NULL"
        " ELSE devices.prev_cert_serial END"
    )
    # Every name is a column of the devices table (looked up above, an
    # unknown one raises KeyError) or one of the two keys here: no input.
    return text(
        f"UPDATE devices SET {', '.join(sets)}"  # noqa: S608
        f" FROM json_to_recordset(CAST(:rows AS JSON)) AS v({record})"
        f" WHERE devices.id = v.{ID_KEY}"
        # The ids again, as an array the primary key is searched with: joined
        # to the function's rows alone, the planner scans the whole table.
        " AND devices.id = ANY(ARRAY(SELECT json_array_elements_text(CAST(:ids AS JSON))))"
    )


def _field_type(column_type: Any, dialect: Dialect) -> str:
    if isinstance(column_type, TypeDecorator):
        column_type = column_type.impl_instance
    return str(column_type.compile(dialect=dialect))
