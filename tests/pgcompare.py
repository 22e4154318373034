"""Fingerprints of a database's contents, for comparing a restore with its source."""

from __future__ import annotations

import psycopg
from psycopg import sql

_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg_toast%'
 ORDER BY 1, 2
"""

_OBJECT_COUNTS = {
    "relations": "SELECT c.relkind::text, count(*) FROM pg_class c JOIN pg_namespace n"
    " ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog','information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%' GROUP BY 1 ORDER BY 1",
    "types": "SELECT t.typtype::text, count(*) FROM pg_type t JOIN pg_namespace n"
    " ON n.oid = t.typnamespace WHERE n.nspname NOT IN ('pg_catalog','information_schema')"
    " GROUP BY 1 ORDER BY 1",
    "functions": "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    " WHERE n.nspname NOT IN ('pg_catalog','information_schema')",
    "triggers": "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1",
    "comments": "SELECT count(*) FROM pg_description d WHERE d.objoid >= 16384",
    "extensions": "SELECT extname FROM pg_extension ORDER BY 1",
    "schemas": "SELECT nspname FROM pg_namespace ORDER BY 1",
    # Definitions and validity: a partition's index built before its parent's must end
    # attached, and the parent's valid.
    "indexes": "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i"
    " JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')"
    " AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2",
    # Inheritance, of tables and of indexes: partitions attached to their parents, with
    # their bounds, and their indexes to their parents' (a partition restored alone).
    "inheritance": "SELECT i.inhrelid::regclass::text, i.inhparent::regclass::text,"
    " pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid ="
    " i.inhrelid ORDER BY 1, 2",
    "constraints": "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid),"
    " c.convalidated, (SELECT p.conname FROM pg_constraint p WHERE p.oid = c.conparentid)"
    " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
    " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2, 3",
    "sequences": "SELECT schemaname, sequencename, last_value FROM pg_sequences ORDER BY 1, 2",
    "large_objects": "SELECT md5(lo_get(oid)) FROM pg_largeobject_metadata ORDER BY 1",
}


# Every timeout the server has, whatever its version: a database may set one (the
# settings tests do), and a fingerprint of a large table on a slow machine outlasts it.
_NO_TIMEOUTS = """
SELECT set_config(name, '0', false) FROM pg_settings
 WHERE name IN ('statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout',
                'idle_session_timeout', 'transaction_timeout')
"""


def fingerprint(url: str) -> dict[str, object]:
    """Per-table md5 of sorted rows, plus object counts, sequences and large objects."""
    result: dict[str, object] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(_NO_TIMEOUTS)
        for schema, table in conn.execute(_TABLES).fetchall():
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), ''))"
                " FROM {}.{} t"
            ).format(sql.Identifier(schema), sql.Identifier(table))
            result[f"table {schema}.{table}"] = conn.execute(query).fetchone()
        for name, query in _OBJECT_COUNTS.items():
            result[name] = conn.execute(query).fetchall()
    return result
