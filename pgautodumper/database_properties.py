"""The database's own properties: its settings, its grants, its comment and its owner.

pg_dump stores them (``DATABASE PROPERTIES``, and the ACL and COMMENT of the
DATABASE), but pg_restore restores them only with ``--create``, which makes the
database itself: a restore into a database that exists, ours always, leaves
them out. On a new server that loses, for instance, an ``ALTER DATABASE ...
SET search_path`` the application depends on, and the ``GRANT CONNECT`` that
replaced PUBLIC's.

So a format-2 backup reads them from the catalogs (any role may read them)
into its roles object, and a whole restore applies them to the target under
the target's own name, after the data: a setting such as
``default_transaction_read_only`` then cannot get in the restore's way. Each
statement runs on its own; one the restoring role may not run (another
owner's database, a role that does not exist, a setting only a superuser may
change) is reported with its error and the statement to run by hand, and the
rest still applies.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import redact

log = logging.getLogger(__name__)

_DATABASE = """
SELECT pg_catalog.pg_get_userbyid(d.datdba), d.datacl IS NULL,
       pg_catalog.shobj_description(d.oid, 'pg_database'),
       COALESCE((SELECT s.setconfig FROM pg_catalog.pg_db_role_setting s
                  WHERE s.setdatabase = d.oid AND s.setrole = 0), '{}')
  FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()
"""

_ROLE_SETTINGS = """
SELECT r.rolname, s.setconfig
  FROM pg_catalog.pg_db_role_setting s JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                         WHERE datname = pg_catalog.current_database())
 ORDER BY 1
"""

# The owner's own entries are left out: an owner holds every privilege anyway.
_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_catalog.pg_get_userbyid(a.grantee) END,
       a.privilege_type, a.is_grantable
  FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a
 WHERE d.datname = pg_catalog.current_database() AND a.grantee <> d.datdba
 ORDER BY 1 NULLS FIRST, 2
"""

# Settings whose value is a list keep their own quoting in setconfig ('"$user", public'):
# written as they are, as pg_dump does (one quoted literal would make the list one element).
_LIST_SETTINGS = {
    "search_path", "temp_tablespaces", "session_preload_libraries",
    "local_preload_libraries", "shared_preload_libraries",
}  # fmt: skip


# A library named here that the server cannot load makes every new connection to the
# database fail ("could not access file"): it must load before the setting is restored.
_PRELOAD_SETTINGS = {"session_preload_libraries", "local_preload_libraries"}
_LIST_ITEM = re.compile(r'"((?:[^"]|"")*)"|([^,\s]+)')


def libraries(setting: str) -> tuple[str, ...]:
    """The libraries a ``*_preload_libraries=...`` setting loads (none for any other)."""
    name, _, value = setting.partition("=")
    if name.lower() not in _PRELOAD_SETTINGS:
        return ()
    return tuple(quoted.replace('""', '"') or bare for quoted, bare in _LIST_ITEM.findall(value))


def load(conn: psycopg.Connection, names: tuple[str, ...]) -> None:
    """LOAD each library; raises the server's error for the first that does not load."""
    for name in names:
        conn.execute(sql.SQL("LOAD {}").format(sql.Literal(name)))


class DatabaseGrant(BaseModel):
    grantee: str | None = Field(description="a role, or None for PUBLIC")
    privilege: Literal["CONNECT", "CREATE", "TEMPORARY"]
    grantable: bool = False


class RoleSetting(BaseModel):
    role: str
    settings: list[str] = Field(description="ALTER ROLE ... IN DATABASE ... SET, as name=value")


class DatabaseProperties(BaseModel):
    owner: str
    settings: list[str] = Field(
        default_factory=list, description="ALTER DATABASE ... SET, as name=value"
    )
    role_settings: list[RoleSetting] = Field(default_factory=list)
    grants: list[DatabaseGrant] | None = Field(
        None, description="the database's ACL, the owner aside; None: the default ACL"
    )
    comment: str | None = None


class AppliedProperties(BaseModel):
    """What a restore did with the database's properties (part of its report)."""

    applied: int = 0
    failed: list[str] = Field(
        default_factory=list, description="statements refused, each with its error"
    )


def read(conn: psycopg.Connection) -> DatabaseProperties:
    row = conn.execute(_DATABASE).fetchone()
    assert row is not None
    owner, default_acl, comment, settings = row
    return DatabaseProperties(
        owner=owner,
        settings=list(settings),
        role_settings=[
            RoleSetting(role=role, settings=list(config))
            for role, config in conn.execute(_ROLE_SETTINGS).fetchall()
        ],
        grants=None
        if default_acl
        else [
            DatabaseGrant(grantee=grantee, privilege=privilege, grantable=grantable)
            for grantee, privilege, grantable in conn.execute(_GRANTS).fetchall()
        ],
        comment=comment,
    )


def set_clause(setting: str) -> sql.Composed:
    """``SET name = value`` for a stored ``name=value``."""
    name, _, value = setting.partition("=")
    rendered = sql.SQL(value) if name.lower() in _LIST_SETTINGS else sql.Literal(value)
    return sql.SQL("SET {} = {}").format(
        sql.SQL(".").join(map(sql.Identifier, name.split("."))), rendered
    )


@dataclass(frozen=True)
class Step:
    """One statement, and the libraries that must load on the server before it runs."""

    statement: sql.Composed
    loads: tuple[str, ...] = ()


def steps(props: DatabaseProperties, dbname: str, *, owners: bool) -> list[Step]:
    """What recreates ``props`` on the database ``dbname``; without owner and grants unless
    ``owners`` (--no-owner restores neither)."""
    database = sql.Identifier(dbname)
    done = [
        Step(sql.SQL("ALTER DATABASE {} {}").format(database, set_clause(s)), libraries(s))
        for s in props.settings
    ]
    for role in props.role_settings:
        done += [
            Step(
                sql.SQL("ALTER ROLE {} IN DATABASE {} {}").format(
                    sql.Identifier(role.role), database, set_clause(setting)
                ),
                libraries(setting),
            )
            for setting in role.settings
        ]
    if owners and props.grants is not None:
        done.append(Step(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(database)))
        for grant in props.grants:
            grantee = sql.Identifier(grant.grantee) if grant.grantee else sql.SQL("PUBLIC")
            option = sql.SQL(" WITH GRANT OPTION" if grant.grantable else "")
            done.append(Step(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(grant.privilege), database, grantee, option
            )))  # fmt: skip
    if props.comment is not None:
        done.append(Step(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            database, sql.Literal(props.comment)
        )))  # fmt: skip
    if owners:  # last: a restoring role that owned the database may no longer alter it after
        done.append(Step(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
            database, sql.Identifier(props.owner)
        )))  # fmt: skip
    return done


def apply(target: ConnectionInfo, props: DatabaseProperties, *, owners: bool) -> AppliedProperties:
    """Run :func:`steps` on the target, each on its own; refusals are reported."""
    result = AppliedProperties()
    with connect(target, writable=True) as conn:
        for step in steps(props, conn.info.dbname, owners=owners):
            text = step.statement.as_string(conn)
            try:
                load(conn, step.loads)
                conn.execute(step.statement)
            except psycopg.Error as exc:
                error = redact(str(exc), target.secret_values()).strip().splitlines()[0]
                result.failed.append(f"{text}: {error}")
                log.warning("database property not restored: %s: %s", text, error)
            else:
                result.applied += 1
    return result
