"""Loading one COPY part of a format-2 backup into its table, all or nothing.

Each part is loaded in its own transaction on a psycopg connection with our
session settings (the text was written under the same DateStyle, IntervalStyle,
extra_float_digits and TimeZone) and the archive's client_encoding::

    BEGIN;
    [TRUNCATE ONLY t;]                     -- the table's only part: COPY ... FREEZE
    COPY t (<columns>) FROM STDIN [(FREEZE)];   -- the part, decompressed as it streams
    COMMIT;                                -- only after sha256 and sizes match the manifest

A part whose bytes differ from the manifest is never committed: the COPY is
failed (psycopg sends CopyFail) before the end, and the error names the part's
table and key. FREEZE writes the rows already frozen (no later anti-wraparound
rewrite of the whole table); PostgreSQL allows it only for a table created or
truncated in the same transaction, hence the TRUNCATE of the still-empty table.
"""

from __future__ import annotations

import threading

import psycopg
from psycopg import sql

from pgautodumper.checked import CheckedObject
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import INCOMPLETE_TARGET, RestoreFailedError, redact
from pgautodumper.manifest import TablePart


class Cancelled(Exception):
    """This load stopped because another part of the restore failed first."""


def copy_statement(part: TablePart, *, freeze: bool) -> sql.Composed:
    # A table without a column (or with only generated ones) is COPYed with no list:
    # "()" is a syntax error, and its rows are empty lines.
    columns = sql.SQL("")
    if part.columns:
        columns = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, part.columns)))
    options = sql.SQL(" (FREEZE)") if freeze else sql.SQL("")
    return sql.SQL("COPY {}.{}{} FROM STDIN{}").format(
        sql.Identifier(part.schema_name), sql.Identifier(part.table), columns, options
    )


def load_part(
    conn: psycopg.Connection,
    info: ConnectionInfo,
    bucket: str,
    part: TablePart,
    *,
    what: str,
    stop: threading.Event,
) -> int:
    """COPY one part into its table; returns the rows loaded (COPY's command tag).

    ``conn`` is in autocommit mode; the part gets its own transaction. Raises
    :class:`ChecksumMismatchError` for bytes that differ from the manifest,
    :class:`RestoreFailedError` when the server refuses them, :class:`Cancelled`
    when ``stop`` was set meanwhile.
    """
    source = CheckedObject(bucket, part, what)
    table = sql.SQL("{}.{}").format(sql.Identifier(part.schema_name), sql.Identifier(part.table))
    try:
        with conn.transaction(), conn.cursor() as cursor:
            if part.freeze:
                cursor.execute(sql.SQL("TRUNCATE ONLY {}").format(table))
            with cursor.copy(copy_statement(part, freeze=part.freeze)) as copy:
                for chunk in source.decompressed():
                    if stop.is_set():
                        raise Cancelled()
                    copy.write(chunk)
                # Before COPY ends: a corrupt part makes it fail, nothing is committed.
                source.finish()
            rows = cursor.rowcount
            if rows != part.rows:
                raise RestoreFailedError(
                    f"restore of {what} ({part.key}) loaded {rows} rows, the manifest records "
                    f"{part.rows}; nothing of it was committed",
                    hint=INCOMPLETE_TARGET,
                )
    except psycopg.Error as exc:
        if stop.is_set():
            raise Cancelled() from None
        # The server refused the rows: were they the rows the backup wrote?
        if (corrupt := source.corruption()) is not None:
            raise corrupt from None
        raise RestoreFailedError(
            f"restore of {what} ({part.key}) failed: {_first_line(exc, info)}; "
            "nothing of this part was committed",
            hint=INCOMPLETE_TARGET,
        ) from None
    finally:
        source.close()
    return rows


def _first_line(exc: BaseException, info: ConnectionInfo) -> str:
    lines = redact(str(exc), info.secret_values()).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
