"""How pgautodumper reaches a PostgreSQL server, without leaking the password.

A :class:`ConnectionInfo` comes from a URL, a Secrets Manager secret or the
standard ``PG*`` environment. The password lives only in a ``SecretStr`` and
reaches child processes (pg_dump, pg_restore) through their environment
(``PGPASSWORD``), never argv, which any local user can read in ``/proc``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import BaseModel, ConfigDict, SecretStr

from pgautodumper.errors import (
    DatabaseAuthError,
    DatabaseError,
    DatabaseNotFoundError,
    DatabaseUnreachableError,
    UsageError,
    redact,
)

DEFAULT_CONNECT_TIMEOUT = 10

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

    def libpq_env(self) -> dict[str, str]:
        """The environment for a libpq child process (pg_dump, pg_restore)."""
        env = dict(os.environ)
        env.setdefault("PGCONNECT_TIMEOUT", str(DEFAULT_CONNECT_TIMEOUT))
        for key, value in self.params.items():
            env[_PARAM_ENV[key]] = value
        if self.password:
            env["PGPASSWORD"] = self.password.get_secret_value()
        return env

    def connect_kwargs(self) -> dict[str, str]:
        kwargs = dict(self.params)
        if "connect_timeout" not in kwargs and "PGCONNECT_TIMEOUT" not in os.environ:
            kwargs["connect_timeout"] = str(DEFAULT_CONNECT_TIMEOUT)
        if self.password:
            kwargs["password"] = self.password.get_secret_value()
        return kwargs

    def describe(self) -> str:
        """host:port/dbname as libpq will resolve it, for messages."""
        host = self.params.get("host") or os.environ.get("PGHOST") or "localhost"
        port = self.params.get("port") or os.environ.get("PGPORT") or "5432"
        dbname = self.params.get("dbname") or os.environ.get("PGDATABASE") or "(default)"
        return f"{host}:{port}/{dbname}"


def classify_connect_error(exc: psycopg.Error, info: ConnectionInfo) -> DatabaseError:
    """Turn a libpq connection failure into the matching named error."""
    text = redact(str(exc), info.secret_values()).strip().splitlines()
    detail = text[-1] if text else type(exc).__name__
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
    if sqlstate == "3D000" or ("database" in lowered and "does not exist" in lowered):
        return DatabaseNotFoundError(
            f"database not found on {target}: {detail}",
            hint="check the database name; 'psql -l' lists the databases",
        )
    return DatabaseUnreachableError(
        f"cannot reach {target}: {detail}",
        hint="check host, port, security groups and that the server is running",
    )


@contextmanager
def connect(info: ConnectionInfo, *, autocommit: bool = True) -> Iterator[psycopg.Connection]:
    """A psycopg connection whose connection errors are classified and redacted."""
    try:
        conn = psycopg.connect(autocommit=autocommit, **info.connect_kwargs())
    except psycopg.Error as exc:
        raise classify_connect_error(exc, info) from None
    with conn:
        yield conn
