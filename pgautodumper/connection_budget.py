"""How many more sessions a run may open on one database, so that its jobs fit.

A format-2 backup holds its leader and opens two pg_dumps and one session per
COPY stream; a restore one per loader (and per ``pg_restore -j`` job, later)
and one for the remaining-data archive. Three limits refuse a session as it
starts (InitPostgres, src/backend/utils/init/postinit.c): the server's
``max_connections`` less the slots it reserves (``superuser_reserved_connections``,
and from PostgreSQL 16 ``reserved_connections``), the role's CONNECTION LIMIT,
and the database's; superusers pass the last two and use the reserved slots.
Starting more jobs than fit fails the run halfway with "too many connections",
after work was done: the jobs are cut to what is free before anything starts,
with a warning, and a run that cannot get even one job stops there, naming the
limit. Others may take a slot meanwhile; that race ends in the same named error
(``ConnectionLimitError``), from the session that was refused.
"""

from __future__ import annotations

import logging

import psycopg
from pydantic import BaseModel

from pgautodumper.errors import ConnectionLimitError

log = logging.getLogger(__name__)

# Client backends only: autovacuum, walsenders and background workers have slots of
# their own. Counted as seen by this session, which it excludes.
_LIMITS = """
SELECT r.rolsuper, r.rolname, d.datname,
       pg_catalog.current_setting('max_connections')::int,
       pg_catalog.current_setting('superuser_reserved_connections')::int
         + COALESCE(pg_catalog.current_setting('reserved_connections', true)::int, 0),
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
         WHERE a.backend_type = 'client backend'),
       r.rolconnlimit,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
         WHERE a.backend_type = 'client backend' AND a.usesysid = r.oid),
       d.datconnlimit,
       (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_activity a
         WHERE a.backend_type = 'client backend' AND a.datid = d.oid)
  FROM pg_catalog.pg_roles r, pg_catalog.pg_database d
 WHERE r.rolname = CURRENT_USER AND d.datname = pg_catalog.current_database()
"""


class ConnectionBudget(BaseModel):
    free: int  # sessions that may still start
    limit: str  # the limit that leaves the fewest, for messages


def measure(conn: psycopg.Connection, *, closing: bool = False) -> ConnectionBudget:
    """What is free beside ``conn``'s own session, or with its slot too if it is
    ``closing`` (measured before the run, not held through it)."""
    row = conn.execute(_LIMITS).fetchone()
    assert row is not None  # the session's own role and database
    superuser, role, database, most, reserved, sessions = row[:6]
    role_limit, role_sessions, database_limit, database_sessions = row[6:]
    server = most - sessions - (0 if superuser else reserved)
    found = [(server, f"max_connections {most} ({sessions} session(s) open)")]
    if not superuser and role_limit >= 0:
        found.append(
            (role_limit - role_sessions, f"role {role}'s CONNECTION LIMIT {role_limit} "
             f"({role_sessions} session(s) open)")
        )  # fmt: skip
    if not superuser and database_limit >= 0:
        found.append(
            (database_limit - database_sessions, f"database {database}'s CONNECTION LIMIT "
             f"{database_limit} ({database_sessions} session(s) open)")
        )  # fmt: skip
    free, limit = min(found, key=lambda pair: pair[0])
    return ConnectionBudget(free=max(free, 0) + closing, limit=limit)


def fit_jobs(
    budget: ConnectionBudget, jobs: int, *, besides: int, what: str, per_job: int = 1
) -> int:
    """The jobs that fit in ``budget`` beside the ``besides`` sessions ``what`` opens
    whatever its jobs, each job holding ``per_job`` at most."""
    fitting = (budget.free - besides) // per_job
    if fitting >= jobs:
        return jobs
    if fitting < 1:
        raise ConnectionLimitError(
            f"{what} needs {besides + per_job} more session(s) at least ({besides} besides "
            f"{per_job} per job), and {budget.limit} leaves {budget.free}; nothing was started",
            hint="end idle sessions or raise that limit, then run it again",
        )
    log.warning(
        "%s: %s leaves %d session(s) free: %d job(s) instead of %d",
        what, budget.limit, budget.free, fitting, jobs,
    )  # fmt: skip
    return fitting
