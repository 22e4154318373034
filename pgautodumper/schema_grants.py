"""CREATE on a schema, lent for pre-data to the roles a restore gives objects to there.

A role that is not a superuser (RDS's and Aurora's master user) may give an
object only to a role that may create it in the object's schema: ``ALTER ...
OWNER TO`` checks the new owner's CREATE privilege there. On the source a
superuser may have given objects away without that grant (``CREATE TABLE`` as
postgres, then ``ALTER TABLE ... OWNER TO app``, with app never granted CREATE
on public, which PostgreSQL 15 no longer grants to PUBLIC). pg_restore then
stops at the first such object. So, for pre-data only, the restore grants
CREATE on those schemas to those owners, and revokes it afterwards: the
schemas' privileges end as the backup has them (the grants the source did
have were applied before, with the schemas: parallel_restore.schemas_first).
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
from pgautodumper.errors import redact

log = logging.getLogger(__name__)

# Entries whose CREATE needs the CREATE privilege on their schema, and so does giving
# them to another role. (An index, a key, a trigger or a policy needs only the
# table's ownership; a comment or grant, the object's.)
CREATES_IN_SCHEMA = {
    "AGGREGATE", "COLLATION", "CONVERSION", "DOMAIN", "FOREIGN TABLE", "FUNCTION",
    "MATERIALIZED VIEW", "OPERATOR", "OPERATOR CLASS", "OPERATOR FAMILY", "PROCEDURE",
    "SEQUENCE", "SHELL TYPE", "TABLE", "TEXT SEARCH CONFIGURATION", "TEXT SEARCH DICTIONARY",
    "TEXT SEARCH PARSER", "TEXT SEARCH TEMPLATE", "TYPE", "VIEW",
}  # fmt: skip

# Of the (schema, role) pairs, those where an existing role may not create.
_LACKING = """
SELECT p.schema, p.role
  FROM ROWS FROM (pg_catalog.unnest(%s::pg_catalog.text[]),
                  pg_catalog.unnest(%s::pg_catalog.text[])) AS p(schema, role)
  JOIN pg_catalog.pg_roles r ON r.rolname = p.role
  JOIN pg_catalog.pg_namespace n ON n.nspname = p.schema
 WHERE NOT pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE')
"""


@dataclass(frozen=True)
class Loan:
    schema: str
    role: str

    def grant(self) -> sql.Composed:
        return sql.SQL("GRANT CREATE ON SCHEMA {} TO {}").format(*self._names())

    def revoke(self) -> sql.Composed:
        return sql.SQL("REVOKE CREATE ON SCHEMA {} FROM {}").format(*self._names())

    def _names(self) -> tuple[sql.Identifier, sql.Identifier]:
        return sql.Identifier(self.schema), sql.Identifier(self.role)


def owners_by_schema(
    entries: Iterable[toc.Entry], schemas: Iterable[str], owners: Iterable[str]
) -> set[tuple[str, str]]:
    """(schema, owner) of every entry that creates an object in a schema of ``schemas``
    and gives it to a role of ``owners`` (names are matched as pg_restore prints them,
    "NAMESPACE TAG OWNER"; a name with a space makes a line ambiguous, so every reading
    counts: a needless loan is taken back like the others)."""
    by_first = _by_word(schemas, first=True)
    by_last = _by_word(owners, first=False)
    return {
        (schema, owner)
        for entry in entries
        if entry.kind in CREATES_IN_SCHEMA
        for schema in by_first.get(entry.rest.split(" ", 1)[0], [])
        if entry.in_schema(schema)
        for owner in by_last.get(entry.rest.rsplit(" ", 1)[-1], [])
        if entry.rest.endswith(" " + toc.printed(owner))
    }


def _by_word(names: Iterable[str], *, first: bool) -> dict[str, list[str]]:
    """Names by the first (or last) word pg_restore prints of them: a line's lookup key."""
    found: dict[str, list[str]] = {}
    for name in names:
        words = toc.printed(name).split(" ")
        found.setdefault(words[0] if first else words[-1], []).append(name)
    return found


@contextlib.contextmanager
def lent(
    target: ConnectionInfo, entries: list[toc.Entry], owners: set[str]
) -> Iterator[list[Loan]]:
    """CREATE granted, for the block, to the owners that lack it on their objects' schemas."""
    if not owners:
        yield []
        return
    with connect(target, writable=True) as conn:
        try:
            rows = _lacking(conn, entries, owners)
        except psycopg.Error as exc:  # lend nothing: pg_restore names what fails then
            log.warning("cannot tell which owners lack CREATE on their schemas: %s",
                        _said(exc, target))  # fmt: skip
            rows = []
        loans = []
        for schema, role in rows:
            loan = Loan(schema, role)
            try:
                conn.execute(loan.grant())
            except psycopg.Error as exc:  # not the schema's owner: pg_restore names the failure
                log.warning("cannot lend CREATE on schema %s to %s: %s", schema, role,
                            _said(exc, target))  # fmt: skip
                continue
            loans.append(loan)
            log.info("lent CREATE on schema %s to %s, which owns objects there, "
                     "until the definitions are restored", schema, role)  # fmt: skip
        try:
            yield loans
        finally:
            for loan in loans:
                try:
                    conn.execute(loan.revoke())
                except psycopg.Error as exc:
                    log.warning("could not take back CREATE on schema %s from %s (revoke it "
                                "yourself): %s", loan.schema, loan.role,
                                _said(exc, target))  # fmt: skip


def _lacking(
    conn: psycopg.Connection, entries: list[toc.Entry], owners: set[str]
) -> list[tuple[str, str]]:
    schemas = [row[0] for row in conn.execute("SELECT nspname FROM pg_catalog.pg_namespace")]
    pairs = sorted(owners_by_schema(entries, schemas, owners))
    return conn.execute(_LACKING, ([s for s, _ in pairs], [r for _, r in pairs])).fetchall()


def _said(exc: psycopg.Error, target: ConnectionInfo) -> str:
    return redact(str(exc), target.secret_values()).strip().replace("\n", " | ")
