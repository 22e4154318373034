"""A server that went away under a backup or a restore, named as such.

A restart, a failover, a crash or a network drop ends a session with words that
describe the symptom ("server closed the connection unexpectedly"). The true
cause is found by asking the server again, in a session of its own: it is down
or starting now; or its start time (``pg_postmaster_start_time()``) changed
since the work began (a restart, or another server took the name: a failover);
or it recovered from a crash of one of its processes, which ends every session
(often the out-of-memory killer); or it stayed up and the link broke with no
word from it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from datetime import datetime

import psycopg
from pydantic import BaseModel

from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import (
    ConnectionLimitError,
    DatabaseError,
    DatabaseUnreachableError,
    PgautodumperError,
)

# A connection that broke without the server ending it (no FATAL from it): how libpq,
# psycopg, psql, pg_dump and pg_restore word a reset, a dropped or timed-out link. A session
# ended while it was sending (COPY FROM STDIN) reads the same: the server's last
# words are never read.
_LINK_BROKE = re.compile(
    r"server closed the connection unexpectedly|connection reset by peer|connection to server "
    r"was lost|could not (?:receive|send) data (?:from|to) server|ssl syscall error|ssl "
    r"connection has been closed unexpectedly|connection timed out|broken pipe"
    # psycopg's own words when libpq found the socket gone.
    r"|connection socket closed|the connection is lost",
    re.IGNORECASE,
)

# Any end of a session (the server's own words for it, or the link's), or a session
# that could not begin: the server went down while the others were running.
_SESSION_LOST = re.compile(
    _LINK_BROKE.pattern + r"|terminating connection|the database system is"
    r"|connection to server .{0,200}? failed|could not connect to server",
    re.IGNORECASE,
)

# 57P02, sent to every session when a server process died (SIGKILL by the out-of-memory
# killer, a segfault): the postmaster ends them all and runs crash recovery, with the
# same start time (and statistics discarded: ServerLife.stats_reset).
_CRASHED = re.compile(r"crash of another server process", re.IGNORECASE)
# How the server refuses sessions while it replays WAL after such a crash (a clean
# restart says "starting up").
_RECOVERING = re.compile(
    r"in recovery mode|consistent recovery state has not been yet reached", re.IGNORECASE
)

# 57P01 with the server still up (a shutdown says the same, then goes away).
_ADMIN_ENDED = re.compile(r"terminating connection due to administrator command", re.IGNORECASE)

_SESSIONS_KILLED_SINCE = 140000
_ASK_SECONDS = 3.0
_ASK_PAUSE_SECONDS = 0.5


class ServerLife(BaseModel, frozen=True):
    """What tells a later failure's cause: when the server started; when its shared
    statistics were last reset (crash recovery discards them, with the same start time);
    and how many sessions of the database an administrator ended
    (pg_stat_database.sessions_killed, 14 and later). None where not known."""

    started_at: datetime
    stats_reset: datetime | None = None
    sessions_killed: int | None = None


def server_life(conn: psycopg.Connection) -> ServerLife:
    killed = (
        "(SELECT d.sessions_killed FROM pg_catalog.pg_stat_database d"
        " WHERE d.datname = pg_catalog.current_database())"
        if conn.info.server_version >= _SESSIONS_KILLED_SINCE
        else "NULL"
    )
    row = conn.execute(
        "SELECT pg_catalog.pg_postmaster_start_time(),"
        f" (SELECT b.stats_reset FROM pg_catalog.pg_stat_bgwriter b), {killed}"
    ).fetchone()
    assert row is not None
    return ServerLife(started_at=row[0], stats_reset=row[1], sessions_killed=row[2])


def recovery_conflict(text: str) -> bool:
    """A replica cancelled or ended a session to replay the primary."""
    return "conflict with recovery" in text


def failure_text(failure: BaseException) -> str:
    return failure.message if isinstance(failure, PgautodumperError) else str(failure)


def went_away(
    info: ConnectionInfo,
    failures: Sequence[BaseException],
    *,
    before: ServerLife,
    during: str,
    hint: str,
    is_replica: bool = False,
) -> DatabaseError | None:
    """The first of ``failures`` that lost its session, named as the server going away
    ``during`` the work (``"the backup of app"``), when it did; else None.

    Retryable (DatabaseUnreachableError), except a session an administrator ended:
    when the server is back, the work can run again. ``before`` was read when the work
    began.
    """
    texts = [failure_text(failure) for failure in failures]
    lost = [t for t in texts if _SESSION_LOST.search(t) and not recovery_conflict(t)]
    if not lost:
        return None
    text = lost[0]
    where = f"{during} on {info.describe()}"
    try:
        now = _ask(info)
    except ConnectionLimitError:
        return None  # up, and busy: not gone
    except DatabaseUnreachableError as exc:
        if _RECOVERING.search(exc.message):
            return _crashed(where, f"{text}; now: {exc.message}", hint)
        return DatabaseUnreachableError(
            f"the server went away during {where} ({text}); now: {exc.message}", hint=hint
        )
    except (DatabaseError, psycopg.Error):
        return None
    if now.started_at != before.started_at:
        # Another start time, earlier or later: a restart, or a failover to another server.
        return DatabaseUnreachableError(
            f"the server restarted or failed over during {where} (started at "
            f"{now.started_at:%Y-%m-%d %H:%M:%S %Z}, not {before.started_at:%H:%M:%S %Z} as "
            f"before): {text}",
            hint=hint,
        )
    # The session that died says only that its link closed, and recovery may be over.
    if _CRASHED.search(text) or now.stats_reset != before.stats_reset:
        return _crashed(where, text, hint)
    broke = bool(_LINK_BROKE.search(text)) and "FATAL:" not in text
    # A session ended while it was sending never reads the server's FATAL: the server's
    # count of sessions ended by an administrator tells.
    if _ADMIN_ENDED.search(text) or (broke and killed(before, now)):
        # Not retryable: someone meant it.
        return DatabaseError(
            f"a session of {where} was ended by an administrator (pg_terminate_backend: a "
            f"person, or a watchdog that ends long sessions? exempt this role from it): {text}",
            hint=hint,
        )
    # On a replica a closed connection may be a conflict with recovery: its count says.
    if not broke or is_replica:
        return None
    return DatabaseUnreachableError(
        f"the connection to {info.describe()} broke during {during}, and the server stayed "
        f"up (a network interruption, or a proxy closed it): {text}",
        hint=hint,
    )


def _ask(info: ConnectionInfo) -> ServerLife:
    """The server's life now, asked again for about 3 s: a server that is resetting after
    a crash, or restarting, closes or refuses sessions for a moment, then says which it
    was (recovery mode, or another start time). One that is gone stays so."""
    deadline = time.monotonic() + _ASK_SECONDS
    while True:
        try:
            with connect(info) as conn:
                return server_life(conn)
        except ConnectionLimitError:
            raise
        except DatabaseUnreachableError as exc:
            if time.monotonic() >= deadline or _RECOVERING.search(exc.message):
                raise
            time.sleep(_ASK_PAUSE_SECONDS)


def _crashed(where: str, text: str, hint: str) -> DatabaseUnreachableError:
    return DatabaseUnreachableError(
        f"the server crashed during {where}: one of its processes died (killed by the "
        f"out-of-memory killer? its log names it), so it ended every session to recover: {text}",
        hint=hint,
    )


def killed(before: ServerLife, now: ServerLife) -> bool:
    if before.sessions_killed is None or now.sessions_killed is None:
        return False
    return now.sessions_killed > before.sessions_killed
