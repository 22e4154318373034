"""The database's encoding and locale: what a database must be created with to hold
a backup's rows the way the source held them.

They are fixed when a database is created, and pg_restore never sets them (it
restores into a database that exists). Yet they decide whether rows load at
all: ``varchar(3)`` counts characters, so 'été' fits a UTF8 database and is
five characters too long for a SQL_ASCII one; ``[[:alpha:]]`` in a CHECK
constraint matches 'é' under a UTF-8 ``LC_CTYPE`` and not under ``C``; and a
LATIN1 database has no room for '日本'.

A backup records them in its manifest. ``verify`` creates its scratch database
with them (the scratch server's own default is UTF8 with the C locale), and
a restore into a database whose encoding differs says so before it starts.
"""

from __future__ import annotations

import logging
from typing import Literal

import psycopg
from psycopg import sql
from pydantic import BaseModel, Field

from pgautodumper.errors import EncodingMismatchError

log = logging.getLogger(__name__)

_PROVIDERS: dict[str, Literal["libc", "icu", "builtin"]] = {
    "c": "libc",
    "i": "icu",
    "b": "builtin",
}
# pg_database.datlocprovider exists from 15 (with daticulocale), datlocale from 17.
_PROVIDER_SINCE = 150000
_BUILTIN_SINCE = 170000
_COMMON = (
    "SELECT pg_catalog.pg_encoding_to_char(d.encoding), d.datcollate::pg_catalog.text,"
    " d.datctype::pg_catalog.text"
)
_WHERE = " FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()"
_QUERIES = {
    0: _COMMON + ", 'c', NULL" + _WHERE,
    _PROVIDER_SINCE: _COMMON + ", d.datlocprovider::pg_catalog.text, d.daticulocale" + _WHERE,
    _BUILTIN_SINCE: _COMMON + ", d.datlocprovider::pg_catalog.text, d.datlocale" + _WHERE,
}


# Errors no other locale would avoid: a lost connection, privileges, the name.
_NOT_ABOUT_THE_LOCALE = (
    psycopg.OperationalError,
    psycopg.errors.InsufficientPrivilege,
    psycopg.errors.DuplicateDatabase,
)


class DatabaseLocale(BaseModel):
    """CREATE DATABASE's ENCODING, LC_COLLATE, LC_CTYPE and LOCALE_PROVIDER."""

    encoding: str = Field(description="the server encoding, as pg_encoding_to_char names it")
    lc_collate: str
    lc_ctype: str
    provider: Literal["libc", "icu", "builtin"] = "libc"
    locale: str | None = Field(None, description="the ICU or builtin locale (provider not libc)")


def read(conn: psycopg.Connection, server_version_num: int) -> DatabaseLocale:
    since = max(v for v in _QUERIES if v <= server_version_num)
    row = conn.execute(_QUERIES[since]).fetchone()
    assert row is not None
    encoding, lc_collate, lc_ctype, provider, locale = row
    return DatabaseLocale(
        encoding=encoding,
        lc_collate=lc_collate,
        lc_ctype=lc_ctype,
        provider=_PROVIDERS.get(provider, "libc"),
        locale=locale,
    )


def _clauses(wanted: DatabaseLocale, server_version_num: int) -> list[sql.Composed]:
    """The ways to create a database like ``wanted``, closest first: the same locale;
    then, where the server lacks it, the same encoding with a locale every server has."""
    encoding = sql.SQL("ENCODING {}").format(sql.Literal(wanted.encoding))
    same = sql.SQL("{} LC_COLLATE {} LC_CTYPE {}").format(
        encoding, sql.Literal(wanted.lc_collate), sql.Literal(wanted.lc_ctype)
    )
    clauses = []
    if wanted.provider == "icu" and wanted.locale and server_version_num >= _PROVIDER_SINCE:
        clauses.append(
            sql.SQL("{} LOCALE_PROVIDER icu ICU_LOCALE {}").format(same, sql.Literal(wanted.locale))
        )
    if wanted.provider == "builtin" and wanted.locale and server_version_num >= _BUILTIN_SINCE:
        clauses.append(
            sql.SQL("{} LOCALE_PROVIDER builtin BUILTIN_LOCALE {}").format(
                same, sql.Literal(wanted.locale)
            )
        )
    clauses.append(same)
    # C.UTF-8 classifies characters as Unicode does (glibc 2.35, every Debian since 12);
    # C is compatible with every encoding, and is the last resort.
    if wanted.encoding == "UTF8":
        clauses.append(sql.SQL("{} LOCALE 'C.UTF-8'").format(encoding))
    clauses.append(sql.SQL("{} LOCALE 'C'").format(encoding))
    return clauses


def create_database(admin: psycopg.Connection, name: str, wanted: DatabaseLocale | None) -> None:
    """CREATE DATABASE ``name`` from template0 with ``wanted``'s encoding and locale, or
    the closest the server has (a warning then says what differs).

    Without ``wanted`` (a backup older than the field) the server's defaults apply.
    Raises what the server raised for the last try, or at once for anything that is
    not about the locale (privileges, the name)."""
    create = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
    if wanted is None:
        admin.execute(create)
        return
    clauses = _clauses(wanted, admin.info.server_version)
    for number, clause in enumerate(clauses):
        try:
            admin.execute(sql.SQL("{} {}").format(create, clause))
        except _NOT_ABOUT_THE_LOCALE:
            raise
        except psycopg.Error as exc:
            if number == len(clauses) - 1:
                raise
            log.debug("CREATE DATABASE %s %s refused: %s", name, clause.as_string(admin), exc)
            continue
        if number:
            log.warning(
                "the server has no locale %s (%s provider) for database %s: created with %s "
                "instead; checks and indexes that depend on the locale may behave otherwise",
                wanted.lc_ctype, wanted.provider, name, clause.as_string(admin),
            )  # fmt: skip
        return


def database_encoding(conn: psycopg.Connection) -> str:
    # The server reports server_encoding when the session starts (every version since
    # 7.4): no query needed.
    encoding = conn.info.parameter_status("server_encoding")
    assert encoding is not None
    return encoding


def warn_if_unlike(backup: DatabaseLocale | None, target_encoding: str, where: str) -> None:
    """Before a restore into a database of another encoding than the backup's."""
    if backup is None or backup.encoding == target_encoding:
        return
    if backup.encoding == "SQL_ASCII":
        # COPY does not check bytes it is told are SQL_ASCII: they are stored as they are.
        log.warning(
            "the backup's database is SQL_ASCII, which holds bytes unchecked; the restore "
            "target %s is %s: bytes that are not valid %s are stored as they are, and reading "
            "them fails later; create the target with ENCODING 'SQL_ASCII' LOCALE 'C' "
            "(TEMPLATE template0) for an exact copy",
            where, target_encoding, target_encoding,
        )  # fmt: skip
        return
    log.warning(
        "the backup's database is %s, the restore target %s is %s: characters %s lacks, and "
        "values that fit a column's length or a check only in %s, will fail the restore; "
        "create the target with ENCODING '%s' (TEMPLATE template0) for an exact copy",
        backup.encoding, where, target_encoding, target_encoding, backup.encoding,
        backup.encoding,
    )  # fmt: skip


def collations_need_encoding(
    where: str, collations: list[str], target_encoding: str, backup_encoding: str
) -> EncodingMismatchError:
    """Collations exist per encoding: the ones a backup's columns use, which the server has
    for the backup's encoding, are not there for the target database's."""
    names = ", ".join(f"pg_catalog.{c}" for c in collations)
    return EncodingMismatchError(
        f"the restore target {where} is a {target_encoding} database, and the backup's "
        f"columns or indexes use collation(s) {names}, which exist for {backup_encoding} "
        "databases: the target must have the backup's encoding; nothing was restored",
        hint=create_target_hint(f"ENCODING '{backup_encoding}'"),
    )


def create_target_hint(clause: str) -> str:
    return (
        f"create the target with CREATE DATABASE ... TEMPLATE template0 {clause}, and restore "
        "into it"
    )
