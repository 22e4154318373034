"""The plan of a format-2 backup: which tables stream by COPY, in which parts.

Read in the leader's snapshot (its catalog is the dump's catalog), once the
leader holds ACCESS SHARE on every table (the size functions lock what they
measure; under our locks they cannot wait):

- **Streamed**: ordinary tables and leaf partitions (permanent, or unlogged but not on
  a hot standby, where they have no data) whose size is at least the threshold
  (``DEFAULT_STREAM_THRESHOLD``, 64 MiB). Each
  becomes one or more parts, ``COPY (SELECT <columns> FROM ONLY t [WHERE
  range]) TO STDOUT``; the column list leaves out dropped and generated
  columns. From PostgreSQL 14 a big table is split into ctid ranges, which a
  TID Range Scan reads without touching the rest of the table; the last range
  is open-ended, so rows that moved past the planned end are not lost. On 13 a
  table is one part. Parts are ordered largest first.
- **Left to pg_dump** (the remaining-data archive, same snapshot): small
  tables, sequences, large objects, extension configuration tables (they are
  extension members), and every partition of a table that pg_dump must load
  through its root: hash partitioning on an enum column, whose hash codes
  depend on enum OIDs that a restore does not keep.

It also records, for every dumped table, its indexes and owned sequences: a
one-table restore needs them, and the archive's TOC does not say which index
belongs to which table.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from psycopg import Connection
from pydantic import BaseModel, Field

from pgautodumper.manifest import TableObjects

MiB = 1024 * 1024
DEFAULT_STREAM_THRESHOLD = 64 * MiB
MAX_RANGE_BYTES = 1024 * MiB
PARTS_PER_JOB = 4  # enough parts that the loaders finish together
TID_RANGE_SCAN_VERSION = 140000

# Whether a partitioned table (pg_partitioned_table pt) is hash-partitioned on an enum:
# pg_dump loads the leaves below it via their root, since an enum's hash differs from
# one database to the next (its getPartitioningInfo() uses the same test).
HASHED_ON_AN_ENUM = """
(SELECT c.oid FROM pg_catalog.pg_opclass c
   JOIN pg_catalog.pg_am a ON a.oid = c.opcmethod
  WHERE c.opcname = 'enum_ops' AND a.amname = 'hash'
    AND c.opcnamespace = 'pg_catalog'::pg_catalog.regnamespace) = ANY (pt.partclass)
"""
# Leaf partitions under such a table.
_LOADED_VIA_ROOT = f"""
SELECT p.relid
  FROM pg_catalog.pg_partitioned_table pt
  CROSS JOIN LATERAL pg_catalog.pg_partition_tree(pt.partrelid) p
 WHERE p.isleaf AND {HASHED_ON_AN_ENUM}
"""

# The filters run first (OFFSET 0 keeps them in their subquery): the size functions
# lock what they measure, so they only ever see the tables the leader has locked.
_CANDIDATES = f"""
SELECT t.oid, t.nspname, t.relname, t.relispartition, t.heap_bytes, t.table_bytes,
       t.columns, t.has_children
  FROM (SELECT c.oid, n.nspname, c.relname, c.relispartition,
               pg_catalog.pg_relation_size(c.oid) AS heap_bytes,
               pg_catalog.pg_table_size(c.oid) AS table_bytes,
               (SELECT pg_catalog.array_agg(a.attname ORDER BY a.attnum)
                  FROM pg_catalog.pg_attribute a
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.attgenerated = '') AS columns,
               EXISTS (SELECT 1 FROM pg_catalog.pg_inherits i
                        WHERE i.inhparent = c.oid) AS has_children
          FROM (SELECT c.oid, c.relnamespace, c.relname, c.relispartition
                  FROM pg_catalog.pg_class c
                  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                 WHERE c.relkind = 'r' AND c.relpersistence IN ('p', 'u')
                   AND (c.relpersistence = 'p' OR NOT pg_catalog.pg_is_in_recovery())
                   AND c.oid = ANY (%(locked)s::pg_catalog.oid[])
                   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
                   AND n.nspname !~ '^pg_(toast|temp_)'
                   AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                                    WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                      AND d.objid = c.oid AND d.deptype = 'e')
                   AND c.oid NOT IN ({_LOADED_VIA_ROOT})
                OFFSET 0) c
          JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        OFFSET 0) t
 WHERE t.table_bytes >= %(threshold)s
 ORDER BY t.table_bytes DESC, t.nspname, t.relname
"""

_RELATIONS = """
SELECT n.nspname, c.relname,
       COALESCE((SELECT pg_catalog.array_agg(i.relname ORDER BY i.relname)
                   FROM pg_catalog.pg_index x
                   JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
                  WHERE x.indrelid = c.oid), '{}') AS indexes,
       COALESCE((SELECT pg_catalog.array_agg(s.relname ORDER BY s.relname)
                   FROM pg_catalog.pg_depend d
                   JOIN pg_catalog.pg_class s ON s.oid = d.objid AND s.relkind = 'S'
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.refobjid = c.oid AND d.deptype IN ('a', 'i')), '{}') AS sequences
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp_)'
 ORDER BY 1, 2
"""


class PlannedPart(BaseModel):
    """One COPY stream to run: a whole table, or one ctid range of it."""

    oid: int
    schema_name: str
    table: str
    columns: list[str]
    predicate: str | None = None
    estimated_bytes: int
    freeze: bool = Field(description="the table's only part, not a partition")
    has_children: bool = Field(
        False, description="an inheritance parent: its count(*) includes its children's rows"
    )

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.table}"


class Plan(BaseModel):
    parts: list[PlannedPart]  # largest first
    relations: list[TableObjects]

    def streamed_tables(self) -> list[tuple[str, str]]:
        """(schema, table) of every streamed table, once each, for pg_dump's exclusions."""
        return list(dict.fromkeys((p.schema_name, p.table) for p in self.parts))

    def streamed_oids(self) -> list[int]:
        return list(dict.fromkeys(p.oid for p in self.parts))

    def counted_by_copy(self) -> list[tuple[str, str]]:
        """Streamed tables whose row count (``count(*)``, as verify counts) is the sum of
        their parts' COPY tags: all but inheritance parents, whose count includes their
        children's rows and is taken by the leader."""
        return list(dict.fromkeys((p.schema_name, p.table) for p in self.parts
                                  if not p.has_children))  # fmt: skip


def ranges(blocks: int, count: int) -> list[str | None]:
    """``count`` ctid predicates covering a table of ``blocks`` pages; the last is open.

    Never more ranges than pages (a table mostly in TOAST has few): an empty range
    would be a part with nothing to read.
    """
    count = min(count, blocks)
    if count <= 1:
        return [None]
    bounds = [blocks * i // count for i in range(1, count)]
    predicates = [f"ctid < '({bounds[0]},0)'::pg_catalog.tid"]
    predicates += [
        f"ctid >= '({low},0)'::pg_catalog.tid AND ctid < '({high},0)'::pg_catalog.tid"
        for low, high in itertools.pairwise(bounds)
    ]
    predicates.append(f"ctid >= '({bounds[-1]},0)'::pg_catalog.tid")
    return predicates


def range_bytes(total_bytes: int, *, jobs: int, threshold: int) -> int:
    """How big a part should be: small enough that ``jobs`` loaders share the work evenly."""
    return max(threshold, min(MAX_RANGE_BYTES, total_bytes // (PARTS_PER_JOB * max(jobs, 1))))


def make_plan(
    conn: Connection,
    *,
    threshold_bytes: int,
    jobs: int,
    server_version_num: int,
    locked: Sequence[int],
) -> Plan:
    """The plan, read in ``conn``'s snapshot, among the tables ``conn`` has ``locked``.

    Only locked tables are measured: the size functions take a lock of their own,
    which would wait, without a bound, for a table someone else holds.
    """
    block_size = int(conn.execute("SELECT pg_catalog.current_setting('block_size')").fetchone()[0])
    tables = conn.execute(
        _CANDIDATES, {"threshold": threshold_bytes, "locked": list(locked)}
    ).fetchall()
    total = sum(row[5] for row in tables)
    target = range_bytes(total, jobs=jobs, threshold=threshold_bytes)
    parts: list[PlannedPart] = []
    for oid, schema, table, is_partition, heap_bytes, table_bytes, columns, children in tables:
        count = 1
        if server_version_num >= TID_RANGE_SCAN_VERSION:
            count = max(1, -(-table_bytes // target))
        predicates = ranges(max(1, heap_bytes // block_size), count)
        for predicate in predicates:
            parts.append(
                PlannedPart(
                    oid=oid,
                    schema_name=schema,
                    table=table,
                    columns=list(columns or []),
                    predicate=predicate,
                    estimated_bytes=table_bytes // len(predicates),
                    freeze=len(predicates) == 1 and not is_partition,
                    has_children=children,
                )
            )
    parts.sort(key=lambda p: p.estimated_bytes, reverse=True)
    relations = [
        TableObjects(schema=schema, table=table, indexes=list(indexes), sequences=list(sequences))
        for schema, table, indexes, sequences in conn.execute(_RELATIONS).fetchall()
    ]
    return Plan(parts=parts, relations=relations)
