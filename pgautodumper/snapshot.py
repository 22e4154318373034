"""A held snapshot: what pg_dump sees is exactly what the row counts count.

A REPEATABLE READ transaction exports its snapshot; pg_dump imports it with
``--snapshot`` while this connection stays open, and the exact per-table row
counts recorded in the manifest are taken in the same transaction. The
connection is checked once more before the dump object is completed: if it
died on the way (a timeout, an administrator, a restart), nothing is stored.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Protocol

import psycopg
from psycopg import sql
from pydantic import BaseModel

from pgautodumper import database_locale, server_gone
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.database_locale import DatabaseLocale
from pgautodumper.errors import (
    DatabaseError,
    DumpFailedError,
    read_denied,
    redact,
)
from pgautodumper.manifest import TableRows
from pgautodumper.server_gone import failure_text, recovery_conflict

log = logging.getLogger(__name__)


class LockedTable(Protocol):
    oid: int


# Tables whose data pg_dump writes: ordinary tables and leaf partitions, outside
# the system schemas, not owned by an extension.
# On a hot standby an unlogged table has no data to read ("cannot access temporary or
# unlogged relations during recovery"), and pg_dump leaves its data out there (it sets
# no_unlogged_table_data on a standby): it is in the backup empty.
_DUMPED_TABLES = """
SELECT n.nspname, c.relname,
       c.relpersistence = 'u' AND pg_catalog.pg_is_in_recovery() AS without_data
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind = 'r'
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                      AND d.objid = c.oid AND d.deptype = 'e')
 ORDER BY 1, 2
"""


class ServerInfo(BaseModel):
    """What backup and preflight need to know about the server and the database."""

    database: str
    server_version: str
    server_version_num: int
    database_size_bytes: int
    is_replica: bool
    database_locale: DatabaseLocale
    # Another start time later means a restart or a failover (server_gone).
    life: server_gone.ServerLife

    @property
    def encoding(self) -> str:
        """The database's (server_encoding): what every stream of a backup is in."""
        return self.database_locale.encoding


def server_info(conn: psycopg.Connection) -> ServerInfo:
    row = conn.execute(
        "SELECT pg_catalog.current_database(), pg_catalog.current_setting('server_version'),"
        " pg_catalog.current_setting('server_version_num')::pg_catalog.int4,"
        " pg_catalog.pg_database_size(pg_catalog.current_database()),"
        " pg_catalog.pg_is_in_recovery()"
    ).fetchone()
    assert row is not None
    return ServerInfo(
        database=row[0],
        server_version=row[1],
        server_version_num=row[2],
        database_size_bytes=row[3],
        is_replica=row[4],
        database_locale=database_locale.read(conn, row[2]),
        life=server_gone.server_life(conn),
    )


# The task runs a dump again after this (task.with_retries): nothing was stored.
_WENT_AWAY_HINT = (
    "nothing was stored; run the backup again (the scheduled task does, after a backoff)"
)


def went_away(
    info: ConnectionInfo, server: ServerInfo, failures: Sequence[BaseException]
) -> DatabaseError | None:
    """The first of ``failures`` that lost its session, named as the server going away
    during the backup, when it did (server_gone.went_away)."""
    return server_gone.went_away(
        info,
        failures,
        before=server.life,
        during=f"the backup of {server.database}",
        hint=_WENT_AWAY_HINT,
        is_replica=server.is_replica,
    )


def count_rows(
    conn: psycopg.Connection, *, skip: set[tuple[str, str]] | frozenset = frozenset()
) -> list[TableRows]:
    """Exact row counts of every dumped table but ``skip``, in the connection's snapshot."""
    counts, empty = [], []
    for schema, table, without_data in conn.execute(_DUMPED_TABLES).fetchall():
        if (schema, table) in skip:
            continue
        if without_data:
            empty.append(f"{schema}.{table}")
            counts.append(TableRows(schema=schema, table=table, rows=0))
            continue
        query = sql.SQL("SELECT pg_catalog.count(*) FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(table)
        )
        try:
            row = conn.execute(query).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise read_denied(
                str(exc).strip().splitlines()[0],
                what=f"table {schema}.{table} in {conn.info.dbname}",
                role=conn.info.user,
            ) from None
        counts.append(TableRows(schema=schema, table=table, rows=row[0] if row else 0))
    if empty:
        log.warning(
            "the server is a replica: unlogged table(s) %s have no data there, and are in the "
            "backup empty (back up the primary to keep their rows)", ", ".join(empty),
        )  # fmt: skip
    return counts


class HeldSnapshot(BaseModel):
    snapshot_id: str
    server: ServerInfo


REPLICA_ADVICE = (
    "set hot_standby_feedback = on (or max_standby_streaming_delay = -1) on the replica, "
    "or back up the primary"
)
REPLICA_CONFLICT_HINT = (
    "nothing was stored; the server is a replica, and it replayed changes that removed rows "
    f"the dump's snapshot still had to read: {REPLICA_ADVICE}; then run the backup again"
)


# The sessions of this database a replica cancelled or ended to replay the primary. A
# session it ends may only see its connection close ("server closed the connection"),
# so the count, not the text, says whether that happened.
_RECOVERY_CONFLICTS = """
SELECT confl_tablespace + confl_lock + confl_snapshot + confl_bufferpin + confl_deadlock
  FROM pg_catalog.pg_stat_database_conflicts WHERE datname = pg_catalog.current_database()
"""


def recovery_conflicts(conn: psycopg.Connection) -> int:
    row = conn.execute(_RECOVERY_CONFLICTS).fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def replica_conflict(
    failure: BaseException, info: ConnectionInfo, conflicts_before: int | None, database: str
) -> DumpFailedError | None:
    """``failure`` named as a conflict with recovery, when it was one: by its text, or by
    the replica's count of sessions it cancelled or ended (``conflicts_before``: that count
    before the dump began; None on a primary)."""
    text = failure_text(failure)
    if recovery_conflict(text):
        return DumpFailedError(text, hint=REPLICA_CONFLICT_HINT)
    if conflicts_before is not None and conflicted_since(info, conflicts_before):
        return DumpFailedError(
            f"{text} (the replica cancelled or ended sessions of {database} meanwhile: a "
            "conflict with recovery)",
            hint=REPLICA_CONFLICT_HINT,
        )
    return None


def conflicted_since(info: ConnectionInfo, before: int) -> bool:
    """Whether the replica cancelled or ended a session of the database since ``before``
    was counted. Asked in a session of its own: the dump's may be gone, and a transaction
    keeps the statistics it read first."""
    try:
        with connect(info) as conn:
            return recovery_conflicts(conn) > before
    except (psycopg.Error, DatabaseError):
        # Replay may cancel the new session's own first statements too ("canceling
        # statement due to conflict with recovery" at connect): no answer, not a failure.
        return False


def snapshot_lost(info: ConnectionInfo, exc: BaseException, *, while_: str) -> DumpFailedError:
    """The named error for a held-snapshot connection that failed or died."""
    detail = redact(str(exc), info.secret_values()).strip() or type(exc).__name__
    return DumpFailedError(
        f"the connection holding the dump's snapshot on {info.describe()} failed "
        f"{while_}: {detail}",
        hint=REPLICA_CONFLICT_HINT
        if recovery_conflict(detail)
        else "nothing was stored; the "
        "server may have ended the session (a timeout, pg_terminate_backend, a restart): "
        "check its log and run the backup again",
    )


def ensure_alive(conn: psycopg.Connection, info: ConnectionInfo) -> None:
    """Prove the snapshot's transaction is still open, before anything is committed."""
    try:
        conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise snapshot_lost(info, exc, while_="before the upload was completed") from None


# Tables whose file changed since the snapshot: TRUNCATE, VACUUM FULL, CLUSTER or a
# rewriting ALTER TABLE committed before our lock. TRUNCATE is not MVCC-safe: the
# snapshot would read the new, empty file as if the rows had never been there.
_REWRITTEN = """
SELECT n.nspname, c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = ANY (%s) AND c.relfilenode <> pg_catalog.pg_relation_filenode(c.oid)
 ORDER BY 1, 2
"""


def ensure_not_rewritten(
    conn: psycopg.Connection, info: ConnectionInfo, tables: Sequence[LockedTable]
) -> None:
    """Fail loudly if a table was rewritten between the snapshot and our lock on it.

    Once locked, no table can be rewritten until the backup ends; before, a
    TRUNCATE would make the snapshot see an empty table (TRUNCATE is not
    MVCC-safe), and the backup would match a manifest that lost the rows.
    """
    try:
        rewritten = conn.execute(_REWRITTEN, ([t.oid for t in tables],)).fetchall()
    except psycopg.Error as exc:
        raise snapshot_lost(info, exc, while_="checking for rewritten tables") from None
    if rewritten:
        names = ", ".join(f"{schema}.{table}" for schema, table in rewritten)
        raise DumpFailedError(
            f"table(s) {names} were truncated or rewritten (TRUNCATE, VACUUM FULL, CLUSTER, "
            f"ALTER TABLE) on {info.describe()} after the backup's snapshot was taken",
            hint="nothing was stored; run the backup again (it then waits for such commands)",
        )


@contextmanager
def held_snapshot(info: ConnectionInfo) -> Iterator[tuple[HeldSnapshot, psycopg.Connection]]:
    """Export a snapshot and keep its transaction open for the duration."""
    with connect(info, autocommit=False) as conn:
        # Explicit, so a role's default_transaction_isolation cannot change it.
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        try:
            server = server_info(conn)
            row = conn.execute("SELECT pg_catalog.pg_export_snapshot()").fetchone()
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot export a snapshot on {info.describe()}: "
                f"{redact(str(exc), info.secret_values())}",
                hint="a hot standby cannot export snapshots before PostgreSQL 10",
            ) from None
        assert row is not None
        try:
            yield HeldSnapshot(snapshot_id=row[0], server=server), conn
        finally:
            # The work is done or failed already: a connection that died since
            # has nothing left to lose, and must not turn into a traceback.
            with contextlib.suppress(psycopg.Error):
                conn.rollback()
