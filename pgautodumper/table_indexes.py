"""A streamed table's own indexes, built as soon as its last part is loaded.

``pg_restore -j`` builds a table's indexes as soon as the table's data is in,
while other tables still load. A restore that waits for all the data before it
starts post-data leaves CPUs idle in its tail, where the largest index builds
alone. So the loader that commits a table's last part builds, with
``pg_restore -L --section=post-data``, the entries that belong to that table
alone: its INDEX entries and its CONSTRAINT entries (primary key, unique,
exclusion), when they depend on no other relation and on nothing of post-data
but indexes. Everything else (foreign keys, which need two tables; triggers,
which would fire on loads; comments and grants on the indexes; partition index
attachments) stays in the post-data step, whose list leaves out what was built
early: pg_restore treats a dependency outside its list as satisfied.

Only tables loaded by parts qualify: the remaining-data archive's tables are
loaded by one pg_restore whose end is the only moment they are known complete.
"""

from __future__ import annotations

from collections.abc import Iterable

from pgautodumper.manifest import TablePart
from pgautodumper.selection import Name, table_names
from pgautodumper.toc import RELATION_KINDS, Entry

OWN_KINDS = {"INDEX", "CONSTRAINT"}
# What a table's own entry may not wait for: entries restored after the data that
# are not indexes or keys. (A partition's index depends on its partitioned
# parent's, which post-data creates later: PostgreSQL lets the partition's come
# first, and the INDEX ATTACH entry, left to post-data, joins them.)
_LATER = {
    "MATERIALIZED VIEW DATA", "INDEX ATTACH", "FK CONSTRAINT", "TRIGGER", "EVENT TRIGGER",
    "RULE", "POLICY", "ROW SECURITY", "STATISTICS", "TABLE DATA", "SEQUENCE SET",
}  # fmt: skip


def own_indexes(
    schema_toc: list[Entry], parts: Iterable[TablePart], known: set[Name]
) -> dict[Name, list[Entry]]:
    """Per table loaded by ``parts``, the entries it can build alone once loaded.

    ``known`` is every table the backup holds: a TOC entry whose printed name
    could also be another table's (pg_restore prints ``"a b"."c"`` and
    ``"a"."b c"`` alike) is left to post-data.
    """
    streamed = {(p.schema_name, p.table) for p in parts}
    table_of = {i: n for i, n in table_names(schema_toc, known).items() if n in streamed}
    by_id = {e.dump_id: e for e in schema_toc}
    found: dict[Name, list[Entry]] = {}
    for entry in schema_toc:
        if entry.kind not in OWN_KINDS:
            continue
        kinds = [by_id[d].kind if d in by_id else None for d in entry.deps]
        tables = {d for d, kind in zip(entry.deps, kinds, strict=True) if kind in RELATION_KINDS}
        if len(tables) != 1 or (table := tables.pop()) not in table_of:
            continue
        if not any(kind is None or kind in _LATER for kind in kinds):
            found.setdefault(table_of[table], []).append(entry)
    return found
