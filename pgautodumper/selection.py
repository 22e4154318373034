"""What a partial restore (``--table``, ``--schema``) takes from a format-2 backup.

The on-call case: a table was dropped or damaged, everything else in the
database is fine. For each named table (and the partitions of a named
partitioned table) the restore takes, from the schema archive's TOC:

- the table's definition, its column defaults, and its owned sequences
  (serial and identity: the manifest's ``relations`` name them) with their
  OWNED BY;
- what hangs off the table: indexes, constraints, triggers, rules, policies,
  row security, extended statistics, comments, grants, partition attachments
  — every entry that depends on a chosen entry and whose other dependencies
  are chosen too or exist in the target: so a foreign key of the table to a
  table that exists comes back, one to a table that is missing does not, and
  the foreign keys other existing tables had to it come back too;

from the remaining-data archive, the table's data (matched by the table's
catalog OID, which both archives carry) and its sequences' positions; and the
table's COPY parts from the manifest.

``--schema NAME`` names every table of the schema. When the schema itself is
missing from the target, its own entry and everything else in it (types,
functions, views, sequences) come back too: nothing of it exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pgautodumper.errors import UsageError
from pgautodumper.manifest import ManifestV2, TablePart
from pgautodumper.toc import RELATION_KINDS, Entry, printed, quote_ident

# Entries that belong to a table (or to something of the table's) rather than stand alone.
_ATTACHED = {
    "ACL", "CHECK CONSTRAINT", "COMMENT", "CONSTRAINT", "DEFAULT", "FK CONSTRAINT", "INDEX",
    "INDEX ATTACH", "POLICY", "PUBLICATION TABLE", "ROW SECURITY", "RULE", "SECURITY LABEL",
    "SEQUENCE", "SEQUENCE OWNED BY", "STATISTICS", "STATISTICS DATA", "TABLE ATTACH",
    "TRIGGER", "MATERIALIZED VIEW DATA",
}  # fmt: skip
# Entries owned by one table: they exist when their table does.
_OF_A_TABLE = {"CONSTRAINT", "CHECK CONSTRAINT", "FK CONSTRAINT", "INDEX", "TRIGGER", "RULE"}

Name = tuple[str, str]


@dataclass
class Selection:
    tables: list[Name]  # every table restored, partitions included
    schema_entries: list[Entry]  # in TOC order
    parts: list[TablePart]
    table_oids: set[int] = field(default_factory=set)
    sequence_names: set[str] = field(default_factory=set)  # Entry.rest of chosen sequences
    attach_last: list[Entry] = field(default_factory=list)  # into tables the target holds
    attachments: list[tuple[Name, Name]] = field(default_factory=list)  # (partition, table)

    def data_entries(self, data_toc: list[Entry]) -> list[Entry]:
        """The remaining-data archive's entries for the chosen tables and sequences."""
        return [
            e
            for e in data_toc
            if (e.kind == "TABLE DATA" and e.oid in self.table_oids)
            or (e.kind == "SEQUENCE SET" and e.rest in self.sequence_names)
        ]


def parse_table(spec: str, known: set[Name]) -> Name:
    """``schema.table`` (either part may be "quoted"), or a table name unique in the backup."""
    if spec.startswith('"'):
        parts = _quoted_parts(spec)
        if parts is not None and len(parts) == 2:
            return parts[0], parts[1]
        if parts is not None and len(parts) == 1:
            return _unique(spec, [n for n in known if n[1] == parts[0]])
        raise UsageError(
            f"cannot read the table name {spec!r}", hint='write it as SCHEMA.TABLE or "Sch"."Tab"'
        )
    splits = [(spec[:i], spec[i + 1 :]) for i, ch in enumerate(spec) if ch == "."]
    candidates = [n for n in splits if n in known]
    if "." not in spec:
        candidates = [n for n in known if n[1] == spec]
    if not candidates and "." in spec:
        schema, _, table = spec.partition(".")
        return schema, table
    return _unique(spec, candidates)


def _unique(spec: str, candidates: list[Name]) -> Name:
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UsageError(
            f"the backup has no table {spec!r}",
            hint="name it as SCHEMA.TABLE; the manifest's tables are listed in its JSON",
        )
    names = ", ".join(f"{quote_ident(s)}.{quote_ident(t)}" for s, t in sorted(candidates))
    raise UsageError(
        f"{spec!r} could be {names}", hint='quote the parts: --table \'"schema"."table"\''
    )


def _quoted_parts(spec: str) -> list[str] | None:
    parts, i = [], 0
    while i < len(spec):
        if spec[i] == '"':
            j, name = i + 1, []
            while j < len(spec):
                if spec[j] == '"':
                    if spec[j + 1 : j + 2] == '"':
                        name.append('"')
                        j += 2
                        continue
                    break
                name.append(spec[j])
                j += 1
            else:
                return None
            parts.append("".join(name))
            i = j + 1
        else:
            j = spec.find(".", i)
            j = len(spec) if j < 0 else j
            parts.append(spec[i:j])
            i = j
        if i < len(spec):
            if spec[i] != ".":
                return None
            i += 1
    return parts


def select(
    manifest: ManifestV2,
    schema_toc: list[Entry],
    *,
    tables: list[str],
    schemas: list[str],
    existing: set[Name],
    existing_schemas: set[str],
    existing_keys: frozenset[str] = frozenset(),
) -> Selection:
    """The entries and parts that restore ``tables`` and ``schemas`` into a target
    whose relations are ``existing`` and whose foreign keys ``existing_keys`` (each
    printed as pg_restore -l does: "schema table name ")."""
    known = manifest.table_names()
    wanted = _wanted(known, schema_toc, tables, schemas)
    table_of = table_names(schema_toc, known, wanted)
    chosen: set[int] = {e.dump_id for e in schema_toc if table_of.get(e.dump_id) in wanted}
    chosen |= _partitions(schema_toc, chosen)
    chosen |= _owned_sequences(manifest, schema_toc, {table_of.get(i) for i in chosen})
    namespaces = sorted({s for s, _ in known} | set(schemas), key=len, reverse=True)
    for schema in set(schemas) - existing_schemas:  # nothing of it exists: all of it
        chosen |= {
            e.dump_id
            for e in schema_toc
            if (e.kind == "SCHEMA" and e.rest.startswith(f"- {printed(schema)} "))
            or (e.kind not in ("SCHEMA", "") and _namespace(e, namespaces) == schema)
        }
    restored = {table_of[i] for i in chosen if i in table_of}
    chosen = _attached(schema_toc, chosen, table_of, restored, existing, existing_keys)
    late = _into_existing_tables(schema_toc, chosen)
    entries = [e for e in schema_toc if e.dump_id in chosen - late]
    return Selection(
        tables=sorted(n for n in restored if n in known),
        schema_entries=entries,
        parts=[p for p in manifest.parts if (p.schema_name, p.table) in restored],
        table_oids={e.oid for e in entries if e.kind in ("TABLE", "MATERIALIZED VIEW")},
        sequence_names={e.rest for e in entries if e.kind == "SEQUENCE"},
        attach_last=[e for e in schema_toc if e.dump_id in late and e.kind == "TABLE ATTACH"],
        attachments=[
            (table_of[e.deps[0]], table_of[e.deps[1]])
            for e in schema_toc
            if e.dump_id in late
            and e.kind == "TABLE ATTACH"
            and e.deps[0] in table_of
            and e.deps[1] in table_of
        ],
    )


def _wanted(
    known: set[Name], schema_toc: list[Entry], tables: list[str], schemas: list[str]
) -> set[Name]:
    """The tables named by ``--table`` and ``--schema``; each must be in the backup."""
    wanted = {parse_table(spec, known) for spec in tables}
    for schema in schemas:
        in_schema = {n for n in known if n[0] == schema}
        if not in_schema and not any(
            e.kind == "SCHEMA" and e.rest.startswith(f"- {printed(schema)} ") for e in schema_toc
        ):
            raise UsageError(f"the backup has no schema {schema!r}", hint="check --schema")
        wanted |= in_schema
    unknown = sorted(wanted - known)
    if unknown:
        _unique(f"{unknown[0][0]}.{unknown[0][1]}", [])
    return wanted


def _attached(
    schema_toc: list[Entry],
    chosen: set[int],
    table_of: dict[int, Name],
    restored: set[Name],
    existing: set[Name],
    existing_keys: frozenset[str],
) -> set[int]:
    """``chosen`` and, until nothing changes, every entry attached to a chosen one whose
    other dependencies are chosen too or exist in the target."""
    by_id = {e.dump_id: e for e in schema_toc}
    chosen = set(chosen)

    def relation(dep: int) -> bool:
        return dep in by_id and by_id[dep].kind in RELATION_KINDS

    def available(dep: int) -> bool:
        entry = by_id.get(dep)
        if entry is None or dep in chosen:
            return True
        if entry.kind in RELATION_KINDS:
            name = table_of.get(dep)
            return name is not None and name not in restored and name in existing
        if entry.kind in _OF_A_TABLE:  # exists if its table does
            return all(available(d) for d in entry.deps if relation(d))
        return True  # types, functions, schemas, extensions: the database holds them

    grew = True
    while grew:
        grew = False
        for entry in schema_toc:
            if entry.dump_id in chosen or entry.kind not in _ATTACHED:
                continue
            if entry.kind == "SEQUENCE" and not any(relation(d) for d in entry.deps):
                continue  # a free-standing sequence is not the table's
            if (
                entry.kind in _OF_A_TABLE
                and _reached_by_attachment(entry, chosen, by_id)
                and any(entry.rest.startswith(key) for key in existing_keys)
            ):
                continue  # it outlived the partition: a key to the partitioned table
            if any(d in chosen for d in entry.deps) and all(available(d) for d in entry.deps):
                chosen.add(entry.dump_id)
                grew = True
    return chosen


def _reached_by_attachment(entry: Entry, chosen: set[int], by_id: dict[int, Entry]) -> bool:
    """Whether a key, index or trigger of tables the target holds, none restored, is chosen
    only through the attachment of a restored partition. A foreign key to the
    partitioned table outlives a partition detached and dropped (it is then kept out),
    not one dropped with CASCADE. One that depends on a restored object, a function of
    a restored schema say, went with it and comes back."""
    tables = [d for d in entry.deps if d in by_id and by_id[d].kind in RELATION_KINDS]
    return (
        bool(tables)
        and not any(d in chosen for d in tables)
        and all(
            by_id[d].kind in ("INDEX ATTACH", "TABLE ATTACH") for d in entry.deps if d in chosen
        )
    )


def _into_existing_tables(schema_toc: list[Entry], chosen: set[int]) -> set[int]:
    """The chosen attachments, of partitions and of their indexes, to a partitioned table
    the target holds (its partition came back alone).

    pg_restore attaches a partition before its indexes and keys exist (the parent's are
    not there either, in a whole restore). Attached to a parent that has them, the
    partition gets them created anew, and its own would then collide ("relation already
    exists", "multiple primary keys"). Attached last, once its indexes and keys exist,
    ATTACH PARTITION adopts the ones that match the parent's, which is what each INDEX
    ATTACH would have done: those are left out.
    """
    relations = {e.dump_id for e in schema_toc if e.kind in RELATION_KINDS}
    return {
        e.dump_id
        for e in schema_toc
        if e.dump_id in chosen
        and e.kind in ("TABLE ATTACH", "INDEX ATTACH")
        and any(d in relations and d not in chosen for d in e.deps)
    }


def table_names(
    schema_toc: list[Entry], known: set[Name], wanted: set[Name] = frozenset()
) -> dict[int, Name]:
    """The relation entries whose printed name is one of the manifest's tables.

    ``"a b"."c"`` and ``"a"."b c"`` print alike: an entry that could be either is
    left unnamed, and refused if a ``wanted`` table is among its candidates.
    """
    names: dict[int, Name] = {}
    for entry in schema_toc:
        if entry.kind not in RELATION_KINDS:
            continue
        matches = [n for n in known if entry.names(*n)]
        if len(matches) == 1:
            names[entry.dump_id] = matches[0]
        elif set(matches) & wanted:
            alike = " and ".join(f"{quote_ident(s)}.{quote_ident(t)}" for s, t in sorted(matches))
            raise UsageError(
                f"cannot tell tables {alike} apart in the backup's table of contents "
                "(pg_restore prints their names alike)",
                hint="restore the whole backup into a scratch database and copy the table",
            )
    return names


def _partitions(schema_toc: list[Entry], chosen: set[int]) -> set[int]:
    """The partitions (at any depth) of chosen partitioned tables: TABLE ATTACH links them."""
    found = set(chosen)
    grew = True
    while grew:
        grew = False
        for entry in schema_toc:
            if entry.kind == "TABLE ATTACH" and len(entry.deps) >= 2:
                child, parent = entry.deps[0], entry.deps[1]
                if parent in found and child not in found:
                    found.add(child)
                    grew = True
    return found - chosen


def _owned_sequences(manifest: ManifestV2, schema_toc: list[Entry], tables: set) -> set[int]:
    """Sequences the manifest says the tables own (serial, identity), by name."""
    owned = [
        (r.schema_name, sequence)
        for r in manifest.relations
        if (r.schema_name, r.table) in tables
        for sequence in r.sequences
    ]
    return {
        e.dump_id for e in schema_toc if e.kind == "SEQUENCE" and any(e.names(*n) for n in owned)
    }


def _namespace(entry: Entry, schemas: list[str]) -> str | None:
    """The entry's schema: the longest known schema name its printed line starts with."""
    return next((s for s in schemas if entry.in_schema(s)), None)
