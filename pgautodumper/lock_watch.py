"""A restore's lock waits are bounded, and whoever blocks one is named.

A restore into a database others use (``--table``, ``--clean``) needs locks
that the application's sessions may hold: a foreign key takes SHARE ROW
EXCLUSIVE on the table it references, which any open transaction that wrote to
that table blocks; a DROP takes ACCESS EXCLUSIVE, which any reader blocks.
Such a wait lasts as long as the other transaction does, which can be forever
for a session left idle in a transaction.

``lock_timeout`` cannot bound it: the fixed header pg_restore sends on every
connection (_doSetFixedOutputState) sets it to 0, over anything PGOPTIONS or
the role says. So every session of the restore carries one application_name,
and a watcher polls ``pg_stat_activity``: when one of them has waited on a
lock held or queued by a session outside the restore for longer than
``lock_wait_timeout_seconds``, it names the blocking sessions (through
``pg_blocking_pids``) and cancels the waiting statement, which makes the
restore fail. The failure is then reported as :class:`LockTimeoutError`.
Waits between the restore's own sessions (pg_restore's parallel jobs) are not
counted: they end when the other job does.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from pgautodumper.blockers import MAX_NAMED, Blocker, statement_words, strongest
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import LockTimeoutError, redact
from pgautodumper.server_gone import ServerLife, server_life

log = logging.getLogger(__name__)

# Our sessions' waits on a lock that a session outside the restore holds or
# queued for ahead of them (pg_blocking_pids; a prepared transaction is pid 0).
_BLOCKED = """
SELECT a.pid, a.query_start, l.locktype, l.mode, l.relation::pg_catalog.int8,
       l.relation::pg_catalog.regclass::pg_catalog.text, a.query
  FROM pg_catalog.pg_stat_activity a
  JOIN pg_catalog.pg_locks l ON l.pid = a.pid AND NOT l.granted
 WHERE a.application_name = %(tag)s AND a.wait_event_type = 'Lock'
   AND EXISTS (SELECT FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids(a.pid)) AS b(pid)
                 LEFT JOIN pg_catalog.pg_stat_activity o ON o.pid = b.pid
                WHERE o.application_name IS DISTINCT FROM %(tag)s)
"""

# Who blocks one waiting session: its blockers' activity and locks on the table waited for.
_BLOCKERS_OF = """
SELECT b.pid, l.mode, l.granted, a.application_name, a.usename, a.state, a.backend_type,
       pg_catalog.date_part('epoch', pg_catalog.now() - a.xact_start)::pg_catalog.int8,
       a.query
  FROM pg_catalog.unnest(pg_catalog.pg_blocking_pids(%(pid)s)) AS b(pid)
  LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = b.pid
  LEFT JOIN pg_catalog.pg_locks l
         ON l.pid = b.pid AND l.locktype = 'relation' AND l.relation = %(relation)s::pg_catalog.oid
 WHERE a.application_name IS DISTINCT FROM %(tag)s
 ORDER BY 8 DESC NULLS LAST, b.pid
"""


@dataclass(frozen=True)
class _Wait:
    pid: int
    query_start: datetime | None
    locktype: str
    mode: str
    relation: int | None
    table: str | None
    statement: str


@dataclass
class LockWatch:
    """Watches the lock waits of every session connected through :attr:`target`."""

    target: ConnectionInfo
    wait_seconds: int
    database: str = ""
    # Read when the restore began: what tells a failure's cause (server_gone).
    server_life: ServerLife | None = None
    expired: LockTimeoutError | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _seen: dict[_Wait, float] = field(default_factory=dict)

    @property
    def interval(self) -> float:
        return min(2.0, max(0.2, self.wait_seconds / 10))

    def run(self, conn: psycopg.Connection) -> None:
        tag = conn.info.parameter_status("application_name") or ""
        try:
            while not self._stop.wait(self.interval) and self.expired is None:
                self._poll(conn, tag)
        except Exception as exc:  # an aid: whatever fails here must not end the restore
            if not self._stop.is_set():
                detail = redact(str(exc), self.target.secret_values()).strip()
                log.warning("the restore's lock waits are no longer watched: %s", detail)

    def _poll(self, conn: psycopg.Connection, tag: str) -> None:
        now = time.monotonic()
        waits = {_Wait(*row[:6], statement=_one_line(row[6])) for row in
                 conn.execute(_BLOCKED, {"tag": tag}).fetchall()}  # fmt: skip
        self._seen = {w: self._seen.get(w, now) for w in waits}
        overdue = [w for w, since in self._seen.items() if now - since >= self.wait_seconds]
        if not overdue:
            return
        wait = overdue[0]
        self.expired = self._diagnose(conn, tag, wait)
        # Cancel only the statement still waiting: the restore then fails on it.
        conn.execute(
            "SELECT pg_catalog.pg_cancel_backend(a.pid) FROM pg_catalog.pg_stat_activity a"
            " WHERE a.pid = %s AND a.query_start = %s AND a.wait_event_type = 'Lock'",
            (wait.pid, wait.query_start),
        )

    def _diagnose(self, conn: psycopg.Connection, tag: str, wait: _Wait) -> LockTimeoutError:
        what = wait.table or f"a {wait.locktype} lock"
        rows = conn.execute(
            _BLOCKERS_OF, {"pid": wait.pid, "relation": wait.relation, "tag": tag}
        ).fetchall()
        found: dict[int, Blocker] = {}
        for pid, mode, granted, app, user, state, backend_type, seconds, query in rows:
            blocker = Blocker(
                table=what, mode=mode or "a conflicting lock", granted=bool(granted),
                pid=pid or None, application_name=app, user=user, state=state,
                backend_type=backend_type, transaction_seconds=seconds,
                statement=statement_words(query),
            )  # fmt: skip
            found[pid] = strongest(found.get(pid), blocker)
        named = [b.describe(ahead_of="the restore") for b in list(found.values())[:MAX_NAMED]]
        more = f"; and {len(found) - MAX_NAMED} more" if len(found) > MAX_NAMED else ""
        first = next(iter(found.values()), None)
        end = (
            f" or end it (SELECT pg_terminate_backend({first.pid}))" if first and first.pid else ""
        )
        return LockTimeoutError(
            redact(
                f"the restore into {self.database} on {self.target.describe()} waited "
                f"{self.wait_seconds}s for {wait.mode} on {what} and was stopped "
                f"(it was running: {wait.statement}): "
                f"{'; '.join(named) or 'the blocking session has finished since'}{more}",
                self.target.secret_values(),
            ),
            hint=f"let that session (an open transaction? a migration?) finish{end}, then run "
            "the restore again (--clean replaces what this one restored); or raise "
            "--lock-wait-timeout",
        )

    def stop(self) -> None:
        self._stop.set()


def tagged(target: ConnectionInfo) -> ConnectionInfo:
    """``target`` with an application_name that marks the sessions of one restore."""
    return target.with_params(application_name=f"pgautodumper restore {secrets.token_hex(4)}")


@contextmanager
def watching(target: ConnectionInfo, wait_seconds: int) -> Iterator[LockWatch]:
    """Watch the lock waits of the sessions that connect through the yielded watch's target.

    The caller connects every session of the restore through ``watch.target``
    and, when the restore fails, reports ``watch.expired`` if it is set: the
    failure was the cancelled wait.
    """
    watch = LockWatch(tagged(target), wait_seconds)
    # Connected here, not in the thread: a target that cannot be reached fails the
    # restore at once, with the connection's own error.
    with connect(watch.target) as conn:
        watch.database = conn.info.dbname
        watch.server_life = server_life(conn)
        thread = threading.Thread(target=watch.run, args=(conn,), name="lock-watch", daemon=True)
        thread.start()
        try:
            yield watch
        finally:
            watch.stop()
            thread.join(timeout=30)


def _one_line(query: str | None) -> str:
    """Our own waiting statement (DDL or COPY: no data in it), on one line, cut short."""
    line = " ".join((query or "").split())
    return line if len(line) <= 160 else line[:157] + "..."
