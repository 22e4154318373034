"""How pgautodumper reaches a PostgreSQL server, without leaking the password.

A :class:`ConnectionInfo` comes from a URL, a Secrets Manager secret or the
standard ``PG*`` environment. The password lives only in a ``SecretStr`` and
reaches child processes (pg_dump, pg_restore) through their environment
(``PGPASSWORD``), never argv, which any local user can read in ``/proc``.

The server is not ours (invariant 8): a role or database may set timeouts, a
DateStyle, a search_path or a read-only default meant for applications. Every
session we open therefore sets what pg_dump sets on its own connections
(:func:`session_settings`), and pg_restore gets the timeouts it may not know
about through ``PGOPTIONS`` (:func:`restore_settings`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, SecretStr

from pgautodumper.errors import (
    ConnectionLimitError,
    DatabaseAuthError,
    DatabaseError,
    DatabaseNotFoundError,
    DatabasePermissionError,
    DatabaseUnreachableError,
    UsageError,
    redact,
)

DEFAULT_CONNECT_TIMEOUT = 10
# Names our sessions in pg_stat_activity (a user's own application_name wins).
APPLICATION_NAME = "pgautodumper"

# libpq's own mapping of connection parameters to environment variables.
_PARAM_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "channel_binding": "PGCHANNELBINDING",
}


class ConnectionInfo(BaseModel):
    """Connection parameters; unset ones fall back to the PG* environment."""

    model_config = ConfigDict(frozen=True)

    params: dict[str, str] = {}
    password: SecretStr | None = None

    @classmethod
    def from_url(cls, url: str) -> ConnectionInfo:
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items()}
        except psycopg.ProgrammingError as exc:
            raise UsageError(
                f"invalid database URL ({redact(str(exc))})",
                hint="use postgresql://user@host:5432/dbname",
            ) from None
        unknown = sorted(set(params) - set(_PARAM_ENV) - {"password"})
        if unknown:
            raise UsageError(f"unsupported connection parameter(s): {', '.join(unknown)}")
        password = params.pop("password", None)
        return cls(params=params, password=SecretStr(password) if password else None)

    @classmethod
    def from_environment(cls) -> ConnectionInfo:
        return cls()

    def with_params(self, **params: str) -> ConnectionInfo:
        return ConnectionInfo(params={**self.params, **params}, password=self.password)

    def secret_values(self) -> list[str]:
        """Values that must never be printed (for redaction and tests)."""
        values = [self.password.get_secret_value()] if self.password else []
        if env_password := os.environ.get("PGPASSWORD"):
            values.append(env_password)
        return values

    def libpq_env(self, *, settings: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment for a libpq child process (pg_dump, pg_restore).

        ``settings`` are appended to the user's own ``PGOPTIONS`` as ``-c name=value``:
        the server applies them at session start, over role and database settings.
        """
        env = dict(os.environ)
        env.setdefault("PGCONNECT_TIMEOUT", str(DEFAULT_CONNECT_TIMEOUT))
        for key, value in self.params.items():
            env[_PARAM_ENV[key]] = value
        if settings:
            env["PGOPTIONS"] = pgoptions(env.get("PGOPTIONS", ""), settings)
        if self.password:
            env["PGPASSWORD"] = self.password.get_secret_value()
        return env

    def connect_kwargs(self) -> dict[str, str]:
        kwargs = dict(self.params)
        if "connect_timeout" not in kwargs and "PGCONNECT_TIMEOUT" not in os.environ:
            kwargs["connect_timeout"] = str(DEFAULT_CONNECT_TIMEOUT)
        # Our queries read names and numbers as UTF-8, whatever PGCLIENTENCODING says.
        kwargs["client_encoding"] = "UTF8"
        kwargs.setdefault("fallback_application_name", APPLICATION_NAME)
        if self.password:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs

    def describe(self) -> str:
        """host:port/dbname as libpq will resolve it, for messages."""
        host = self.params.get("host") or os.environ.get("PGHOST") or "localhost"
        port = self.params.get("port") or os.environ.get("PGPORT") or "5432"
        dbname = self.params.get("dbname") or os.environ.get("PGDATABASE") or "(default)"
        return f"{host}:{port}/{dbname}"


# What a server says when it refuses a session for lack of a slot (SQLSTATE 53300,
# which libpq does not hand over for a failed connection: the text is all there is).
_NO_SLOT = (
    "too many connections for role",
    "too many connections for database",
    "too many clients already",
    "remaining connection slots are reserved",
)


def refused_for_lack_of_slots(text: str) -> bool:
    return any(phrase in text for phrase in _NO_SLOT)


# The server's refusals that no retry mends, as PostgreSQL 15 to 18 word them: the
# role, pg_hba.conf and the database's CONNECT privilege. libpq hands over no
# SQLSTATE for a failed connection, so the text is all there is.
_ROLE_REFUSED = re.compile(r'role "([^"]+)" (does not exist|is not permitted to log in)')
_HBA_REFUSED = re.compile(r"no pg_hba\.conf entry for host|pg_hba\.conf rejects connection")
_NO_CONNECT_PRIVILEGE = re.compile(r'permission denied for database "([^"]+)"')
# Refusals that pass: a database closed to connections for now, a server starting or stopping.
_NOT_ACCEPTING = re.compile(r'database "([^"]+)" is not currently accepting connections')
_SERVER_NOT_READY = re.compile(
    r"the database system is (starting up|shutting down|in recovery mode"
    r"|not (?:yet )?accepting connections)"
)


def classify_connect_error(exc: psycopg.Error, info: ConnectionInfo) -> DatabaseError:
    """Turn a libpq connection failure into the matching named error."""
    # Every line: a FATAL's DETAIL comes after it, and each address libpq tried has its own.
    detail = " ".join(redact(str(exc), info.secret_values()).split()) or type(exc).__name__
    target = info.describe()
    sqlstate = getattr(exc, "sqlstate", None)
    lowered = detail.lower()
    if (
        sqlstate in ("28P01", "28000")
        or "password authentication failed" in lowered
        or ("no password supplied" in lowered)
    ):
        return DatabaseAuthError(
            f"authentication failed for {target}: {detail}",
            hint="check the user and password (or the secret) and pg_hba.conf",
        )
    if role := _ROLE_REFUSED.search(detail):
        fix = (
            f"ALTER ROLE {role[1]} LOGIN"
            if role[2].startswith("is not")
            else f"create role {role[1]}"
        )
        return DatabaseAuthError(
            f"{target} refused role {role[1]!r}: {detail}",
            hint=f"{fix}, or check the user name (or the secret)",
        )
    if _HBA_REFUSED.search(detail):
        return DatabaseAuthError(
            f"{target} refused this host, user and database by pg_hba.conf: {detail}",
            hint="add a pg_hba.conf line for them; 'no encryption' means the server accepts only "
            "TLS from here (RDS with rds.force_ssl): use sslmode=require or verify-full",
        )
    if database := _NO_CONNECT_PRIVILEGE.search(detail):
        return DatabasePermissionError(
            f"{target} refused the session: the role lacks CONNECT on database {database[1]!r}: "
            f"{detail}",
            hint=f'GRANT CONNECT ON DATABASE "{database[1]}" TO the role (a REVOKE ... FROM '
            "PUBLIC took it away)",
        )
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return DatabaseNotFoundError(
            f"database not found on {target}: {detail}",
            hint="check the database name; 'psql -l' lists the databases",
        )
    if refused_for_lack_of_slots(lowered):
        return ConnectionLimitError(
            f"{target} refused a connection: {detail}",
            hint="lower --jobs, end idle sessions, or raise that limit",
        )
    if closed := _NOT_ACCEPTING.search(detail):
        return DatabaseUnreachableError(
            f"database {closed[1]!r} on {target} accepts no connections: {detail}",
            hint=f'ALTER DATABASE "{closed[1]}" ALLOW_CONNECTIONS true, if it is closed for good',
        )
    if state := _SERVER_NOT_READY.search(detail):
        return DatabaseUnreachableError(
            f"the server at {target} is {state[1]}: {detail}",
            hint="wait until it accepts connections (a scheduled run retries), or point at "
            "another server",
        )
    if "certificate" in lowered or "ssl" in lowered:
        return DatabaseUnreachableError(
            f"TLS to {target} failed: {detail}",
            hint="with sslmode verify-full the CA must have signed the server's certificate and "
            "the certificate must name the host: check ssl_root_cert (RDS/Aurora: leave it unset)",
        )
    return DatabaseUnreachableError(
        f"cannot reach {target}: {detail}",
        hint="check host, port, security groups and that the server is running",
    )


# Server versions (server_version_num) from which a setting exists.
_IDLE_SESSION_TIMEOUT_SINCE = 140000
_TRANSACTION_TIMEOUT_SINCE = 170000


def _newer_timeouts(server_version_num: int) -> dict[str, str]:
    """The timeouts a server of that version has, beyond the three every version has.

    idle_session_timeout ends a session that waits outside a transaction, which
    pg_dump's never do and ours do: a loader while it builds a table's indexes, the
    lock watch between two looks."""
    settings = {}
    if server_version_num >= _IDLE_SESSION_TIMEOUT_SINCE:
        settings["idle_session_timeout"] = "0"
    if server_version_num >= _TRANSACTION_TIMEOUT_SINCE:
        settings["transaction_timeout"] = "0"
    return settings


def session_settings(server_version_num: int, *, writable: bool = False) -> dict[str, str]:
    """What every session of ours sets, over whatever the role or database set.

    The same choices pg_dump makes for its own connections (setup_connection in
    src/bin/pg_dump/pg_dump.c, and the fixed output state pg_restore sends):
    no timeout of any kind, ISO dates, postgres intervals, exact floats, an empty
    search_path (so pg_catalog always wins; user tables are schema-qualified),
    and row security off (a policy that would hide rows raises instead). The
    isolation default is reset because a replica refuses a serializable one, and
    TimeZone is fixed so timestamps we read do not depend on the role. Like the
    header of every script pg_restore writes (_doSetFixedOutputState), XML is
    read as content: a database set to ``xmloption = document`` would refuse
    the fragments a COPY of an xml column carries, so loading a part would fail.
    And ``array_nulls`` stays on: off, a NULL element of a text[] would load as
    the string 'NULL'. ``enable_tidscan`` stays on too: off, every ctid range of a
    split table would be read by a scan of the whole table.
    """
    settings = {
        "statement_timeout": "0",
        "lock_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
        "DateStyle": "ISO",
        "IntervalStyle": "postgres",
        "extra_float_digits": "3",
        "row_security": "off",
        "synchronize_seqscans": "off",
        "TimeZone": "UTC",
        "default_transaction_isolation": "read committed",
        "search_path": "",
        "xmloption": "content",
        "array_nulls": "on",
        "standard_conforming_strings": "on",
        "enable_tidscan": "on",
        **_newer_timeouts(server_version_num),
    }
    if writable:
        # Only sessions that must write (CREATE/DROP DATABASE on a scratch server).
        settings["default_transaction_read_only"] = "off"
    return settings


def restore_settings(server_version_num: int) -> dict[str, str]:
    """Settings pg_restore gets through PGOPTIONS, applied before its first statement.

    pg_restore resets the timeouts it knows about, but a pg_restore older than
    17 does not know transaction_timeout, which a 17+ server may set on the
    role; and a read-only default on the target would refuse every CREATE (the
    user asked for this write; pg_dumpall scripts reset it the same way). Only
    parameters the target server knows are sent: an unknown one fails the
    connection ("unrecognized configuration parameter").
    """
    settings = {
        "statement_timeout": "0",
        "lock_timeout": "0",
        "idle_in_transaction_session_timeout": "0",
        "default_transaction_read_only": "off",
        # Not in pg_restore's header: off, a NULL element of a text[] loads as 'NULL'.
        "array_nulls": "on",
        **_newer_timeouts(server_version_num),
    }
    return settings


def pgoptions(existing: str, settings: Mapping[str, str]) -> str:
    """``existing`` followed by ``-c name=value`` for each setting (libpq escaping)."""

    def escape(text: str) -> str:
        # libpq splits options on spaces; a backslash escapes a space or a backslash.
        return text.replace("\\", "\\\\").replace(" ", "\\ ")

    ours = " ".join(f"-c {escape(name)}={escape(value)}" for name, value in settings.items())
    return f"{existing} {ours}".strip()


# One round trip: set_config over two arrays. Everything in the statement is
# qualified, so a role's search_path cannot substitute its own set_config.
_APPLY_SETTINGS = (
    "SELECT pg_catalog.set_config(s.name, s.value, false) FROM ROWS FROM ("
    "pg_catalog.unnest(%s::pg_catalog.text[]), pg_catalog.unnest(%s::pg_catalog.text[])"
    ") AS s(name, value)"
)


def apply_session_settings(
    conn: psycopg.Connection, info: ConnectionInfo, *, writable: bool = False
) -> None:
    """Set :func:`session_settings` on ``conn`` (in autocommit, so a rollback keeps them)."""
    settings = session_settings(conn.info.server_version, writable=writable)
    try:
        conn.execute(_APPLY_SETTINGS, (list(settings), list(settings.values())))
    except psycopg.Error as exc:
        raise DatabaseError(
            f"cannot set up the session on {info.describe()}: "
            f"{redact(str(exc), info.secret_values()).strip()}",
            hint="check the server's log; the role may lack permission to change a setting",
        ) from None


@contextmanager
def connect(
    info: ConnectionInfo, *, autocommit: bool = True, writable: bool = False
) -> Iterator[psycopg.Connection]:
    """A psycopg connection with our session settings; connection errors are classified.

    ``writable`` also resets a read-only default, for sessions that must write.
    """
    try:
        conn = psycopg.connect(autocommit=True, **info.connect_kwargs())
    except psycopg.Error as exc:
        raise classify_connect_error(exc, info) from None
    with conn:
        apply_session_settings(conn, info, writable=writable)
        # Only now: a transaction started before the settings would carry the
        # role's isolation default and timeouts.
        conn.autocommit = autocommit
        yield conn
