"""Locks: the dump's lock waits are bounded, and whoever blocks them is named.

A migration holding ACCESS EXCLUSIVE on a table would otherwise hang a backup
until the task's timeout. After exporting its snapshot, the leader connection
takes ACCESS SHARE on every table pg_dump will lock, in a few batched
statements, under one deadline. Once it holds them no new ACCESS EXCLUSIVE can
be granted, and the row counts never wait. pg_dump itself runs with
``--lock-wait-timeout`` for the remaining case: an ACCESS EXCLUSIVE request
queued behind the leader, which pg_dump's own lock requests then queue behind.

When a wait expires, :func:`diagnose` reads ``pg_locks`` and
``pg_stat_activity`` on a separate connection (the leader's transaction is
aborted by then) and names the session: pid, application_name, how long its
transaction has been open, what it is doing and its lock mode.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql
from pydantic import BaseModel

from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import (
    DumpFailedError,
    LockTimeoutError,
    PgautodumperError,
    read_denied,
    redact,
)
from pgautodumper.snapshot import snapshot_lost

log = logging.getLogger(__name__)

# Tables per LOCK TABLE statement: one round trip for many tables, while a
# statement stays far below any message size limit.
LOCK_BATCH = 500
# At most this many blocking sessions are named in one message.
MAX_NAMED = 3

# What pg_dump locks (getTables): plain and partitioned tables outside the
# system schemas (other sessions' temporary schemas are pg_temp_N). Extension
# members are included: pg_dump locks those it dumps policies of; a superset
# costs nothing when nobody blocks it.
_TABLES_TO_LOCK = """
SELECT c.oid::pg_catalog.int8, n.nspname, c.relname
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
 ORDER BY 2, 3
"""

# Only ACCESS EXCLUSIVE conflicts with ACCESS SHARE: granted, or queued ahead of us.
_BLOCKERS = """
SELECT l.relation::pg_catalog.int8, l.mode, l.granted, l.pid, a.application_name,
       a.usename, a.state, a.backend_type,
       pg_catalog.date_part('epoch', pg_catalog.now() - a.xact_start)::pg_catalog.int8,
       a.query
  FROM pg_catalog.pg_locks l
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'
   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                      WHERE d.datname = pg_catalog.current_database())
   AND l.relation = ANY (%s::pg_catalog.oid[])
   AND l.pid IS DISTINCT FROM pg_catalog.pg_backend_pid()
 ORDER BY l.granted DESC, 9 DESC NULLS LAST, l.pid
"""

_LONG_LOCK_HOLDERS = """
SELECT l.pid, a.application_name, a.usename, a.state,
       pg_catalog.date_part('epoch', pg_catalog.now() - a.xact_start)::pg_catalog.int8,
       pg_catalog.format('%%I.%%I', n.nspname, c.relname), l.mode
  FROM pg_catalog.pg_locks l
  JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
  JOIN pg_catalog.pg_class c ON c.oid = l.relation
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE l.locktype = 'relation' AND l.granted
   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d
                      WHERE d.datname = pg_catalog.current_database())
   AND c.relkind IN ('r', 'p')
   AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
   AND l.pid <> pg_catalog.pg_backend_pid()
   AND a.xact_start < pg_catalog.now() - pg_catalog.make_interval(secs => %s)
 ORDER BY 5 DESC, 1, 6
"""

# The lock modes, weakest first (for "the strongest lock a session holds").
_MODES = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


class Table(BaseModel):
    oid: int
    schema_name: str
    name: str

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.name}"


class Blocker(BaseModel):
    """A session whose ACCESS EXCLUSIVE lock (held or queued) blocks the dump."""

    table: str
    mode: str
    granted: bool
    pid: int | None
    application_name: str | None
    user: str | None
    state: str | None
    backend_type: str | None
    transaction_seconds: int | None
    statement: str | None

    def describe(self, *, ahead_of: str = "the dump") -> str:
        if self.pid is None:
            return (
                f"a prepared transaction holds {self.mode} on {self.table} (see pg_prepared_xacts)"
            )
        who = f"pid {self.pid} ({_session(self.application_name, self.user, self.backend_type)})"
        how = (
            f"holds {self.mode} on {self.table}"
            if self.granted
            else f"is queued for {self.mode} on {self.table}, ahead of {ahead_of}"
        )
        return f"{who} {how}, {_activity(self.transaction_seconds, self.state, self.statement)}"


def strongest(held: Blocker | None, other: Blocker) -> Blocker:
    """Of two rows of one session, the one to name: a granted lock, then the stronger mode."""
    if held is None:
        return other

    def rank(b: Blocker) -> tuple[bool, int]:
        return b.granted, _MODES.index(b.mode) if b.mode in _MODES else -1

    return other if rank(other) > rank(held) else held


def tables_to_lock(conn: psycopg.Connection) -> list[Table]:
    return [
        Table(oid=oid, schema_name=schema, name=name)
        for oid, schema, name in conn.execute(_TABLES_TO_LOCK).fetchall()
    ]


def lock_for_dump(
    conn: psycopg.Connection,
    info: ConnectionInfo,
    *,
    wait_seconds: int,
    database: str,
) -> list[Table]:
    """Take ACCESS SHARE on every table pg_dump will lock, within ``wait_seconds`` in all.

    Runs in the snapshot's transaction (after the export: the locks do not
    change what the snapshot sees). Raises :class:`LockTimeoutError` naming the
    blocking session when the deadline passes; the transaction is then aborted.
    """
    try:
        tables = tables_to_lock(conn)
    except psycopg.Error as exc:
        raise snapshot_lost(info, exc, while_="listing the tables") from None
    log.info(
        "locking %d table(s) of %s for the dump (waiting at most %ds)",
        len(tables),
        database,
        wait_seconds,
    )
    deadline = time.monotonic() + wait_seconds
    try:
        for start in range(0, len(tables), LOCK_BATCH):
            batch = tables[start : start + LOCK_BATCH]
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                raise diagnose(info, tables, waited_seconds=wait_seconds, database=database)
            # lock_timeout bounds each lock wait, statement_timeout the batch: together
            # the whole step stays within the deadline however many tables are blocked.
            _set_local_timeouts(conn, f"{remaining_ms}ms")
            conn.execute(
                sql.SQL("LOCK TABLE ONLY {} IN ACCESS SHARE MODE").format(
                    sql.SQL(", ").join(sql.Identifier(t.schema_name, t.name) for t in batch)
                )
            )
        _set_local_timeouts(conn, "0")
    except (psycopg.errors.LockNotAvailable, psycopg.errors.QueryCanceled):
        raise diagnose(info, tables, waited_seconds=wait_seconds, database=database) from None
    except psycopg.errors.InsufficientPrivilege as exc:
        raise read_denied(
            str(exc).strip().splitlines()[0], what=f"the tables of {database}", role=conn.info.user
        ) from None
    except psycopg.errors.UndefinedTable as exc:
        raise DumpFailedError(
            f"a table of {database} was dropped while the backup started "
            f"({str(exc).strip().splitlines()[0]})",
            hint="nothing was stored; run the backup again",
        ) from None
    except psycopg.errors.OutOfMemory as exc:
        # 53200 "out of shared memory": the leader and pg_dump each hold one lock per table.
        raise DumpFailedError(
            f"the server ran out of lock slots locking the {len(tables)} tables of {database} "
            f"({str(exc).strip().splitlines()[0]})",
            hint="nothing was stored; raise max_locks_per_transaction on the server "
            "(the backup holds two locks per table)",
        ) from None
    except psycopg.Error as exc:
        raise snapshot_lost(info, exc, while_="locking the tables") from None
    return tables


def _set_local_timeouts(conn: psycopg.Connection, value: str) -> None:
    conn.execute(
        "SELECT pg_catalog.set_config('lock_timeout', %s, true),"
        " pg_catalog.set_config('statement_timeout', %s, true)",
        (value, value),
    )


def pg_dump_lock_timeout(stderr: str) -> bool:
    """Whether pg_dump's stderr tail says one of its LOCK TABLE statements timed out."""
    text = stderr.lower()
    return "lock table" in text and ("timeout" in text or "could not obtain lock" in text)


def find_blockers(conn: psycopg.Connection, tables: Sequence[Table]) -> list[Blocker]:
    """Sessions holding or queued for ACCESS EXCLUSIVE on any of ``tables``."""
    names = {t.oid: t.qualified for t in tables}
    rows = conn.execute(_BLOCKERS, ([t.oid for t in tables],)).fetchall()
    return [
        Blocker(
            table=names.get(relation, f"oid {relation}"),
            mode=mode,
            granted=granted,
            pid=pid,
            application_name=application_name,
            user=user,
            state=state,
            backend_type=backend_type,
            transaction_seconds=seconds,
            statement=statement_words(query),
        )
        for relation, mode, granted, pid, application_name, user, state, backend_type, seconds, query in rows  # noqa: E501
    ]


def diagnose(
    info: ConnectionInfo, tables: Sequence[Table], *, waited_seconds: int, database: str
) -> LockTimeoutError:
    """The :class:`LockTimeoutError` for an expired wait, naming who blocks it."""
    try:
        with connect(info) as conn:
            blockers = find_blockers(conn, tables)
    except (psycopg.Error, PgautodumperError) as exc:
        detail = redact(str(exc), info.secret_values()).strip()
        return LockTimeoutError(
            f"the dump of {database} waited {waited_seconds}s for a table lock and gave up; "
            f"the blocking session could not be looked up ({detail})",
            hint="look for long transactions in pg_stat_activity (a migration?), let them "
            "finish, then run the backup again; or raise lock_wait_timeout_seconds",
        )
    if not blockers:
        return LockTimeoutError(
            f"the dump of {database} waited {waited_seconds}s for a table lock and gave up; "
            "the session that held it has finished since",
            hint="run the backup again; if this repeats, raise lock_wait_timeout_seconds",
        )
    first = blockers[0]
    named = "; ".join(b.describe() for b in blockers[:MAX_NAMED])
    more = f"; and {len(blockers) - MAX_NAMED} more" if len(blockers) > MAX_NAMED else ""
    end = f"end it (SELECT pg_terminate_backend({first.pid}))" if first.pid else "resolve it"
    return LockTimeoutError(
        redact(
            f"the dump of {database} could not lock table {first.table} within "
            f"{waited_seconds}s: {named}{more}",
            info.secret_values(),
        ),
        hint=f"wait for that session (a migration?) to finish or {end}, then run the backup "
        "again; or raise lock_wait_timeout_seconds (--lock-wait-timeout)",
    )


def long_lock_holders(conn: psycopg.Connection, min_age_seconds: float) -> list[str]:
    """Warnings about transactions older than ``min_age_seconds`` that hold table locks.

    One line per session: pid, application_name, how long its transaction has
    been open, and the tables it locks (strongest mode first). A session that
    holds ACCESS EXCLUSIVE would make a backup wait, then fail, by name.
    Sessions of other roles are visible only with pg_read_all_stats (or
    pg_monitor): without it they are not listed.
    """
    sessions: dict[int, dict[str, object]] = {}
    locks: dict[int, dict[str, str]] = {}
    for pid, app, user, state, seconds, table, mode in conn.execute(
        _LONG_LOCK_HOLDERS, (min_age_seconds,)
    ):
        sessions.setdefault(pid, {"app": app, "user": user, "state": state, "seconds": seconds})
        held = locks.setdefault(pid, {})
        if table not in held or _MODES.index(mode) > _MODES.index(held[table]):
            held[table] = mode
    warnings = []
    for pid, session in sessions.items():
        held = locks[pid]
        ordered = sorted(held.items(), key=lambda item: (-_MODES.index(item[1]), item[0]))
        listed = ", ".join(f"{table} ({mode})" for table, mode in ordered[:5])
        if len(ordered) > 5:
            listed += f" and {len(ordered) - 5} more"
        blocks = (
            "; it blocks a backup until it ends" if "AccessExclusiveLock" in held.values() else ""
        )
        who = _session(session["app"], session["user"], None)  # type: ignore[arg-type]
        warnings.append(
            f"pid {pid} ({who}) has held locks on {listed} in a transaction open for "
            f"{_duration(session['seconds'])} ({session['state'] or 'state unknown'}){blocks}"  # type: ignore[arg-type]
        )
    return warnings


def _session(application_name: str | None, user: str | None, backend_type: str | None) -> str:
    parts = [f"application_name {application_name!r}" if application_name is not None else
             "application_name unknown"]  # fmt: skip
    if user:
        parts.append(f"user {user}")
    if backend_type and backend_type != "client backend":
        parts.append(backend_type)
    return ", ".join(parts)


def _activity(seconds: int | None, state: str | None, statement: str | None) -> str:
    if seconds is None and state is None:
        # Another role's session, without pg_read_all_stats: pg_stat_activity hides it.
        return "its activity is hidden (grant pg_read_all_stats to the backup role to see it)"
    doing = f"{state}: {statement}" if statement else (state or "state unknown")
    return f"in a transaction open for {_duration(seconds)} ({doing})"


def statement_words(query: str | None) -> str | None:
    """The first words of a session's statement: what it does, without its data."""
    if not query or query.startswith("<"):  # '<insufficient privilege>' and the like
        return None
    text = re.sub(r"--[^\n]*|/\*.*?\*/", " ", query, flags=re.DOTALL)
    words = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text)[:2]
    return " ".join(words) or None


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return "an unknown time"
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
