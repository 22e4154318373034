"""The roles a backup's objects need, so a restore into a new server can recreate them.

pg_dump leaves roles out: they belong to the cluster, not the database. A
restore into a new server then stops at the first ``ALTER ... OWNER TO``. So
every format-2 backup also stores ``<stem>.roles.json.zst``: the roles its
objects name, read from catalogs any role may read (no superuser: it works on
RDS and Aurora, where pg_authid is off limits) and never a password:

- owners, grantees and default-privilege roles: ``pg_shdepend`` records each
  dependency of this database's objects on a role (owner, ACL, policy);
  objects of the bootstrap superuser are not recorded, and need no role;
- the database's owner, the grantees of its ACL, the roles with settings in it;
- memberships, both ways and transitively: the groups those roles belong to,
  and their members (the login roles of a group that owns things).

Built-in and provider roles are left out (``pg_*``, ``rds*``, ``azure_*``,
``cloudsql*``, the bootstrap superuser): every server has its own.

``restore --with-roles`` creates the roles the target lacks (attributes,
per-role settings, memberships), never with a password: login roles are
reported so that someone sets one. Attributes only a superuser may grant
(SUPERUSER, REPLICATION, BYPASSRLS) are granted when the restoring role may,
else reported.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import datetime

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from pgautodumper.database_properties import DatabaseProperties, libraries, load, set_clause
from pgautodumper.database_properties import read as read_database_properties

log = logging.getLogger(__name__)

ROLES_FORMAT = 1
# Roles every server has, or that a provider manages: never stored, never created.
_BUILT_IN = re.compile(r"^(pg_|rds|azure_|cloudsql|aurora_|alloydb|gcp_)")

_NEEDED = """
WITH RECURSIVE direct AS (
    SELECT d.refobjid AS oid
      FROM pg_catalog.pg_shdepend d
     WHERE d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND d.dbid = (SELECT oid FROM pg_catalog.pg_database
                      WHERE datname = pg_catalog.current_database())
    UNION
    SELECT datdba FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database()
    UNION  -- the database's grantees (a shared object: dbid 0)
    SELECT d.refobjid FROM pg_catalog.pg_shdepend d
     WHERE d.dbid = 0 AND d.classid = 'pg_catalog.pg_database'::pg_catalog.regclass
       AND d.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
       AND d.objid = (SELECT oid FROM pg_catalog.pg_database
                       WHERE datname = pg_catalog.current_database())
    UNION  -- ALTER ROLE ... IN DATABASE ... SET
    SELECT s.setrole FROM pg_catalog.pg_db_role_setting s
     WHERE s.setrole <> 0 AND s.setdatabase = (SELECT oid FROM pg_catalog.pg_database
                                                WHERE datname = pg_catalog.current_database())
), closure AS (
    SELECT oid FROM direct
    UNION  -- the groups of a role, and the members of a group, transitively
    SELECT CASE WHEN m.member = c.oid THEN m.roleid ELSE m.member END
      FROM pg_catalog.pg_auth_members m JOIN closure c ON c.oid IN (m.member, m.roleid)
)
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil,
       COALESCE(r.rolconfig, '{}'), r.oid = 10 AS bootstrap
  FROM pg_catalog.pg_roles r JOIN closure c ON c.oid = r.oid
 ORDER BY r.rolname
"""

# From 16 a membership has its own INHERIT and SET options (GRANT ... WITH INHERIT FALSE
# keeps a member from using the group's privileges without SET ROLE), and may be granted
# more than once, by different grantors: one membership each, with any grant's options.
_MEMBERSHIPS = """
SELECT g.rolname, m.rolname, pg_catalog.bool_or(a.admin_option), {options}
  FROM pg_catalog.pg_auth_members a
  JOIN pg_catalog.pg_roles g ON g.oid = a.roleid
  JOIN pg_catalog.pg_roles m ON m.oid = a.member
 GROUP BY 1, 2 ORDER BY 1, 2
"""
_MEMBERSHIP_OPTIONS_SINCE = 160000


class Role(BaseModel):
    name: str
    login: bool = False
    superuser: bool = False
    inherit: bool = True
    create_role: bool = False
    create_db: bool = False
    replication: bool = False
    bypass_rls: bool = False
    connection_limit: int = -1
    valid_until: datetime | None = None
    settings: list[str] = Field(
        default_factory=list, description="ALTER ROLE ... SET, as name=value"
    )


class Membership(BaseModel):
    group: str
    member: str
    admin: bool = False
    inherit: bool | None = Field(None, description="the grant's INHERIT option (16 and later)")
    set: bool | None = Field(None, description="the grant's SET option (16 and later)")

    def grant(self) -> sql.Composed:
        """GRANT group TO member, with the options the source's grant had."""
        if self.inherit is None or self.set is None:  # before 16: ADMIN is the only one
            options = sql.SQL(" WITH ADMIN OPTION" if self.admin else "")
        else:
            options = sql.SQL(" WITH ADMIN {}, INHERIT {}, SET {}").format(
                *(
                    sql.SQL("TRUE" if flag else "FALSE")
                    for flag in (self.admin, self.inherit, self.set)
                )
            )
        return sql.SQL("GRANT {} TO {}{}").format(
            sql.Identifier(self.group), sql.Identifier(self.member), options
        )


class RoleSet(BaseModel):
    """The body of ``<stem>.roles.json.zst``."""

    format_version: int = ROLES_FORMAT
    roles: list[Role]
    memberships: list[Membership]
    database: DatabaseProperties | None = Field(
        None,
        description="the database's settings, grants, comment and owner (pg_restore restores "
        "them only with --create); absent from backups before they were stored",
    )

    def names(self) -> set[str]:
        return {role.name for role in self.roles}

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> RoleSet:
        return cls.model_validate(json.loads(raw))


def built_in(name: str) -> bool:
    return bool(_BUILT_IN.match(name))


def collect(conn: psycopg.Connection) -> RoleSet:
    """The roles this database's objects need, with their memberships (no passwords)."""
    roles = []
    for row in conn.execute(_NEEDED).fetchall():
        name, *attributes, bootstrap = row
        if bootstrap or built_in(name):
            continue
        sup, inherit, createrole, createdb, login, repl, bypass, limit, until, config = attributes
        roles.append(
            Role(
                name=name,
                login=login,
                superuser=sup,
                inherit=inherit,
                create_role=createrole,
                create_db=createdb,
                replication=repl,
                bypass_rls=bypass,
                connection_limit=limit,
                valid_until=until,
                settings=list(config),
            )
        )
    names = {role.name for role in roles}
    options = (
        "pg_catalog.bool_or(a.inherit_option), pg_catalog.bool_or(a.set_option)"
        if conn.info.server_version >= _MEMBERSHIP_OPTIONS_SINCE
        else "NULL::pg_catalog.bool, NULL::pg_catalog.bool"
    )
    memberships = [
        Membership(group=group, member=member, admin=admin, inherit=inherit, set=set_)
        for group, member, admin, inherit, set_ in conn.execute(
            _MEMBERSHIPS.format(options=options)
        ).fetchall()
        if group in names and member in names
    ]
    return RoleSet(roles=roles, memberships=memberships, database=read_database_properties(conn))


class CreatedRoles(BaseModel):
    """What ``--with-roles`` did (part of restore's report)."""

    created: list[str] = Field(default_factory=list)
    need_password: list[str] = Field(default_factory=list, description="login roles created")
    not_granted: list[str] = Field(
        default_factory=list,
        description="attributes only a superuser may give, and settings naming a library "
        "the server cannot load: left out",
    )
    assumed: list[str] = Field(
        default_factory=list,
        description="created roles the restoring role (not a superuser) joined for the restore, "
        "so that it may give objects to them; it leaves them again at the end",
    )


# ALTER ... OWNER TO needs membership in the new owner, whatever INHERIT (up to 15,
# is_member_of_role), from 16 a membership with the SET option (member_can_set_role):
# a CREATEROLE role then holds ADMIN on the roles it creates, not SET. A superuser
# passes both (src/backend/utils/adt/acl.c).
_NOT_ASSIGNABLE = """
SELECT r.rolname FROM pg_catalog.pg_roles r
 WHERE r.rolname = ANY(%s) AND NOT pg_catalog.pg_has_role(current_user, r.oid, %s)
 ORDER BY 1
"""
_SET_OPTION_SINCE = 160000


def not_assignable(conn: psycopg.Connection, names: Iterable[str]) -> list[str]:
    """The existing roles among ``names`` that the connected role may not give objects to."""
    mode = "SET" if conn.info.server_version >= _SET_OPTION_SINCE else "MEMBER"
    return [row[0] for row in conn.execute(_NOT_ASSIGNABLE, [sorted(names), mode]).fetchall()]


def join(conn: psycopg.Connection, names: Iterable[str]) -> list[str]:
    """Join the roles among ``names`` the connected role may grant itself (it holds ADMIN
    on them, as a CREATEROLE role does on those it created from PostgreSQL 16; any role
    but a superuser for CREATEROLE before): the ones joined, for :func:`leave`."""
    joined = []
    for name in names:
        try:
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))
        except psycopg.Error:
            continue
        joined.append(name)
    return joined


def leave(conn: psycopg.Connection, assumed: Iterable[str]) -> None:
    """Undo :func:`create_missing`'s temporary memberships: the target ends as the source was."""
    for name in assumed:
        conn.execute(sql.SQL("REVOKE {} FROM CURRENT_USER").format(sql.Identifier(name)))


def missing(conn: psycopg.Connection, roles: RoleSet) -> list[str]:
    existing = {row[0] for row in conn.execute("SELECT rolname FROM pg_catalog.pg_roles")}
    return sorted(roles.names() - existing)


def _options(role: Role, *, superuser: bool) -> tuple[list[str], list[str]]:
    """CREATE ROLE options we may give, and the ones left out (not a superuser)."""
    options = [
        "LOGIN" if role.login else "NOLOGIN",
        "INHERIT" if role.inherit else "NOINHERIT",
        "CREATEROLE" if role.create_role else "NOCREATEROLE",
        "CREATEDB" if role.create_db else "NOCREATEDB",
        f"CONNECTION LIMIT {int(role.connection_limit)}",
    ]
    if role.valid_until is not None:
        options.append(f"VALID UNTIL '{role.valid_until.isoformat()}'")
    privileged = {
        "SUPERUSER": role.superuser,
        "REPLICATION": role.replication,
        "BYPASSRLS": role.bypass_rls,
    }
    wanted = [name for name, on in privileged.items() if on]
    if superuser:
        return options + wanted, []
    return options, wanted


def _alter_role_set(role: str, setting: str) -> sql.Composed:
    return sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(role), set_clause(setting))


def create_missing(conn: psycopg.Connection, roles: RoleSet) -> CreatedRoles:
    """Create the roles the target lacks, then their memberships; never a password."""
    result = CreatedRoles()
    absent = set(missing(conn, roles))
    superuser = bool(
        conn.execute(
            "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user"
        ).fetchone()[0]
    )
    for role in roles.roles:
        if role.name not in absent:
            continue
        options, left_out = _options(role, superuser=superuser)
        conn.execute(
            sql.SQL("CREATE ROLE {} WITH " + " ".join(options)).format(sql.Identifier(role.name))
        )
        for setting in role.settings:
            try:
                # A preload library the server lacks would refuse every login of the role.
                load(conn, libraries(setting))
            except psycopg.Error as exc:
                result.not_granted.append(f"{role.name}: {setting} ({str(exc).strip()})")
                continue
            conn.execute(_alter_role_set(role.name, setting))
        result.created.append(role.name)
        if role.login:
            result.need_password.append(role.name)
        result.not_granted += [f"{role.name}: {a} (needs a superuser)" for a in left_out]
    for membership in roles.memberships:
        if membership.member in absent or membership.group in absent:
            conn.execute(membership.grant())
    if not superuser:
        # A CREATEROLE role is not a member of the roles it creates (from PostgreSQL 16 it
        # holds ADMIN only), so it could not give them their objects.
        result.assumed = not_assignable(conn, result.created)
        for name in result.assumed:
            conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(name)))
    if result.created:
        log.info("created %d role(s): %s", len(result.created), ", ".join(result.created))
    return result
