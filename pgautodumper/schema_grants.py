"""CREATE on a schema, lent for a restore to the roles it gives objects to there.

A role that is not a superuser (RDS's and Aurora's master user) may give an
object only to a role that may create it in the object's schema: ``ALTER ...
OWNER TO`` checks the new owner's CREATE privilege there. On the source a
superuser may have given objects away without that grant (``CREATE TABLE`` as
postgres, then ``ALTER TABLE ... OWNER TO app``, with app never granted CREATE
on public, which PostgreSQL 15 no longer grants to PUBLIC). pg_restore then
stops at the first such object. So, for the restore, it grants CREATE on
those schemas to those owners, and revokes it when the restore ends: the
schemas' privileges end as the backup has them (the grants the source did
have were applied before, with the schemas: parallel_restore.schemas_first).
A publication's new owner needs CREATE on the database: lent the same way.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgautodumper import toc
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import PgautodumperError, redact

log = logging.getLogger(__name__)

# Entries whose CREATE needs the CREATE privilege on their schema, and so does giving
# them to another role. (An index, a key, a trigger or a policy needs only the
# table's ownership; a comment or grant, the object's.)
CREATES_IN_SCHEMA = {
    "AGGREGATE", "COLLATION", "CONVERSION", "DOMAIN", "FOREIGN TABLE", "FUNCTION",
    "MATERIALIZED VIEW", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "PROCEDURE",
    "SEQUENCE", "SHELL TYPE", "STATISTICS", "TABLE", "TEXT SEARCH CONFIGURATION",
    "TEXT SEARCH DICTIONARY", "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TYPE", "VIEW",
}  # fmt: skip
# Entries whose new owner needs CREATE on the database (ALTER PUBLICATION ... OWNER TO).
OWNED_BY_DATABASE_CREATORS = {"PUBLICATION"}

# Of the (schema, role) pairs, those where an existing role may not create; then the
# roles that may not create in the database (schema NULL).
_LACKING = """
SELECT p.schema, p.role
  FROM ROWS FROM (pg_catalog.unnest(%(schemas)s::pg_catalog.text[]),
                  pg_catalog.unnest(%(roles)s::pg_catalog.text[])) AS p(schema, role)
  JOIN pg_catalog.pg_roles r ON r.rolname = p.role
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.schema
 WHERE NOT pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
UNION ALL
SELECT NULL, r.rolname FROM pg_catalog.pg_roles r
 WHERE r.rolname = ANY(%(database_roles)s::pg_catalog.text[])
   AND NOT pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')
"""


@dataclass(frozen=True)
class Loan:
    """CREATE on a schema, or on the database when ``schema`` is None, for ``role``."""

    schema: str | None
    role: str
    database: str

    def grant(self) -> sql.Composed:
        return sql.SQL("GRANT CREATE ON {} TO {}").format(self._object(), sql.Identifier(self.role))

    def revoke(self) -> sql.Composed:
        role = sql.Identifier(self.role)
        return sql.SQL("REVOKE CREATE ON {} FROM {}").format(self._object(), role)

    def describe(self) -> str:
        return f"database {self.database}" if self.schema is None else f"schema {self.schema}"

    def _object(self) -> sql.Composed:
        if self.schema is None:
            return sql.SQL("DATABASE {}").format(sql.Identifier(self.database))
        return sql.SQL("SCHEMA {}").format(sql.Identifier(self.schema))


def owners_by_schema(
    entries: Iterable[toc.Entry], schemas: Iterable[str], owners: Iterable[str]
) -> set[tuple[str, str]]:
    """(schema, owner) of every entry that creates an object in a schema of ``schemas``
    and gives it to a role of ``owners`` (names are matched as pg_restore prints them,
    "NAMESPACE TAG OWNER"; a name with a space makes a line ambiguous, so every reading
    counts: a needless loan is taken back like the others)."""
    by_first: dict[str, list[str]] = {}
    for schema in schemas:
        by_first.setdefault(toc.first_word(schema), []).append(schema)
    return {
        (schema, owner)
        for entry in entries
        if entry.kind in CREATES_IN_SCHEMA
        for schema in by_first.get(toc.first_word(entry.rest), [])
        if entry.in_schema(schema)
        for owner in _owners_of(entry, owners)
    }


def database_creators(entries: Iterable[toc.Entry], owners: Iterable[str]) -> set[str]:
    """The owners of entries whose new owner needs CREATE on the database."""
    return {
        owner
        for entry in entries
        if entry.kind in OWNED_BY_DATABASE_CREATORS
        for owner in _owners_of(entry, owners)
    }


def _owners_of(entry: toc.Entry, owners: Iterable[str]) -> list[str]:
    return [o for o in owners if entry.rest.endswith(" " + toc.printed(o))]


@contextlib.contextmanager
def lent(
    target: ConnectionInfo, entries: list[toc.Entry], owners: set[str]
) -> Iterator[list[Loan]]:
    """CREATE granted, for the block, to the owners that lack it where their objects go.

    Each side uses a session of its own, for a moment: none is held while the
    restore's loaders need every session the target allows.
    """
    loans = _lend(target, entries, owners) if owners else []
    try:
        yield loans
    finally:
        if loans:
            _take_back(target, loans)


def _lend(target: ConnectionInfo, entries: list[toc.Entry], owners: set[str]) -> list[Loan]:
    loans = []
    with connect(target, writable=True) as conn:
        try:
            schemas = [r[0] for r in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace")]
            pairs = sorted(owners_by_schema(entries, schemas, owners))
            rows = conn.execute(
                _LACKING,
                {
                    "schemas": [s for s, _ in pairs],
                    "roles": [r for _, r in pairs],
                    "database_roles": sorted(database_creators(entries, owners)),
                },
            ).fetchall()
        except psycopg.Error as exc:  # lend nothing: pg_restore names what fails then
            log.warning("cannot tell which owners lack CREATE: %s", _said(exc, target))
            return []
        for schema, role in rows:
            loan = Loan(schema, role, conn.info.dbname)
            try:
                conn.execute(loan.grant())
            except psycopg.Error as exc:  # not the owner: pg_restore names the failure
                log.warning("cannot lend CREATE on %s to %s: %s", loan.describe(), role,
                            _said(exc, target))  # fmt: skip
                continue
            loans.append(loan)
            log.info("lent CREATE on %s to %s, which owns objects there, until the restore "
                     "ends", loan.describe(), role)  # fmt: skip
    return loans


def _take_back(target: ConnectionInfo, loans: list[Loan]) -> None:
    try:
        with connect(target, writable=True) as conn:
            for loan in loans:
                conn.execute(loan.revoke())
    except (psycopg.Error, PgautodumperError) as exc:
        message = _said(exc, target) if isinstance(exc, psycopg.Error) else str(exc)
        log.warning("could not take back CREATE lent for the restore (%s): revoke it yourself: "
                    "%s", "; ".join(f"{loan.describe()} to {loan.role}" for loan in loans),
                    message)  # fmt: skip


def _said(exc: psycopg.Error, target: ConnectionInfo) -> str:
    return redact(str(exc), target.secret_values()).strip().replace("\n", " | ")
