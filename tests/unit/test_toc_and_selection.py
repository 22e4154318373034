"""Reading pg_restore's TOC listing, and naming tables for a partial restore."""

from __future__ import annotations

import pytest

from pgautodumper import schema_grants, toc
from pgautodumper.errors import UsageError
from pgautodumper.manifest import ManifestV2, TableObjects
from pgautodumper.selection import parse_table, select
from pgautodumper.toc import parse

LISTING = """\
;
; Archive created at 2026-01-01 00:00:00 UTC
;     dbname: shop
;
; Selected TOC Entries:
;
9; 2615 16700 SCHEMA - Odd Schema postgres
221; 1259 16716 TABLE Odd Schema Mixed Case Table postgres
;\tdepends on: 1007 9
3661; 0 16716 TABLE DATA Odd Schema Mixed Case Table postgres
;\tdepends on: 221
3514; 2606 16791 FK CONSTRAINT public child child_p_fkey postgres
;\tdepends on: 233 235 3511
3688; 0 0 SEQUENCE OWNED BY public child_id_seq app owner
"""


def test_entries_kinds_dependencies_and_names():
    schema, table, data, fk, owned = parse(LISTING)
    assert (schema.dump_id, schema.kind, schema.rest) == (9, "SCHEMA", "- Odd Schema postgres")
    assert (table.kind, table.oid, table.deps) == ("TABLE", 16716, [1007, 9])
    assert table.names("Odd Schema", "Mixed Case Table")
    assert not table.names("Odd", "Schema Mixed Case Table x")
    assert (data.kind, data.oid, data.deps) == ("TABLE DATA", 16716, [221])  # not "TABLE"
    assert (fk.kind, fk.deps) == ("FK CONSTRAINT", [233, 235, 3511])
    assert owned.kind == "SEQUENCE OWNED BY" and owned.names("public", "child_id_seq")
    assert table.line == "221; 1259 16716 TABLE Odd Schema Mixed Case Table postgres"


KNOWN = {
    ("public", "orders"),
    ('weird"quote', "table.with.dots"),
    ("a.b", "c"),
    ("a", "b.c"),
    ("sales", "orders"),
}


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("public.orders", ("public", "orders")),
        ('weird"quote.table.with.dots', ('weird"quote', "table.with.dots")),
        ('"weird""quote"."table.with.dots"', ('weird"quote', "table.with.dots")),
        ('"a.b".c', ("a.b", "c")),
        ('"a"."b.c"', ("a", "b.c")),
        ("nowhere.orders", ("nowhere", "orders")),  # refused later: not in the backup
    ],
)
def test_table_names(spec, name):
    assert parse_table(spec, KNOWN) == name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("a.b.c", 'could be "a"."b.c", "a.b"."c"'),
        ("orders", 'could be "public"."orders", "sales"."orders"'),
    ],
)
def test_ambiguous_table_names_ask_for_quotes(spec, message):
    with pytest.raises(UsageError, match="quote the parts") as raised:
        parse_table(spec, KNOWN)
    assert message in raised.value.message


def test_the_owners_to_lend_create_are_read_per_schema_from_the_toc():
    entries = parse(
        "10; 1259 1 TABLE public a app\n"
        "11; 1259 2 TABLE a b c app\n"  # schema "a b", or table "b c" of schema "a"
        "12; 1255 3 FUNCTION public f() my role\n"
        "13; 0 0 ACL public a app\n"  # a grant gives nothing away
        "14; 1259 4 INDEX public a_pkey other\n"  # an index has its table's owner
    )
    pairs = schema_grants.owners_by_schema(
        entries, ["public", "a", "a b", "pg_catalog"], ["app", "my role", "role", "other"]
    )
    assert pairs == {("public", "app"), ("a", "app"), ("a b", "app"), ("public", "my role"),
                     ("public", "role")}  # fmt: skip


# pg_dump 15's TOC of a partitioned table (events: a key, an index, a foreign key to
# kinds) with a partition events_a, and a table notes whose foreign key references it.
PARTITIONED = """\
214; 1259 16386 TABLE public kinds postgres
215; 1259 16391 TABLE public events postgres
216; 1259 16396 TABLE public events_a postgres
;\tdepends on: 215
217; 1259 16401 TABLE public notes postgres
3225; 0 0 TABLE ATTACH public events_a postgres
;\tdepends on: 216 215
3300; 0 16396 TABLE DATA public events_a postgres
;\tdepends on: 216
3221; 2606 16392 CONSTRAINT public kinds kinds_pkey postgres
;\tdepends on: 214
3224; 2606 16397 CONSTRAINT public events events_pkey postgres
;\tdepends on: 215 215 215
3228; 2606 16409 CONSTRAINT public events_a events_a_pkey postgres
;\tdepends on: 216 3224 216 216 216
3222; 1259 16441 INDEX public events_at postgres
;\tdepends on: 215
3226; 1259 16446 INDEX public events_a_at_idx postgres
;\tdepends on: 3222 216 216
3238; 0 0 INDEX ATTACH public events_a_at_idx postgres
;\tdepends on: 3226 3222 216 215
3239; 0 0 INDEX ATTACH public events_a_pkey postgres
;\tdepends on: 3224 216 3228 3224 216 215
3240; 2620 16450 TRIGGER public events stamp postgres
;\tdepends on: 215
3246; 2606 16398 FK CONSTRAINT public events events_kind_fkey postgres
;\tdepends on: 214 215 3221
3247; 2606 16399 FK CONSTRAINT public notes notes_event_fkey postgres
;\tdepends on: 3239 217 3224 215
3248; 2606 16400 FK CONSTRAINT public notes notes_kind_fkey postgres
;\tdepends on: 217 214 3221
3400; 3466 16500 EVENT TRIGGER - log_ddl postgres
3401; 0 0 COMMENT public CONSTRAINT notes_event_fkey ON notes postgres
;\tdepends on: 3247
"""


def _ids(entries) -> list[int]:
    return [e.dump_id for e in entries]


def test_a_clean_leaves_to_drop_table_the_keys_and_indexes_that_go_with_it():
    """Not the partition's share of the parent's key, which cannot be dropped while it
    is attached; foreign keys stay, to go before the tables they reference."""
    entries = parse(PARTITIONED)
    assert _ids(toc.to_drop(entries, entries)) == [
        214, 215, 216, 217, 3225, 3238, 3239, 3240, 3246, 3247, 3248, 3400, 3401
    ]  # fmt: skip
    only_a = [e for e in entries if e.dump_id in (216, 3228, 3226)]
    assert _ids(toc.to_drop(only_a, entries)) == [216]
    kept_table = [e for e in entries if e.dump_id in (3224, 3222)]  # events is not dropped
    assert _ids(toc.to_drop(kept_table, entries)) == [3224, 3222]


def test_index_attachments_then_keys_and_triggers_of_partitioned_tables_come_last():
    """And the event triggers after them, which would fire on them."""
    entries = parse(PARTITIONED)
    steps = toc.partitioned_steps(entries)
    assert _ids(steps.attachments) == [3238, 3239]
    # 3247 needs 3239's index valid; 3401 comments on 3247.
    assert _ids(steps.last) == [3240, 3246, 3247, 3400, 3401]
    plain = [e for e in entries if e.kind not in ("TABLE ATTACH", "INDEX ATTACH")]
    assert toc.partitioned_steps(plain) == toc.PartitionedSteps()


def test_a_partition_restored_alone_is_attached_last_and_adopts_its_indexes():
    entries = parse(PARTITIONED)
    tables = [
        TableObjects(schema="public", table=n) for n in ("kinds", "events", "events_a", "notes")
    ]
    manifest = ManifestV2.model_construct(tables=[], parts=[], relations=tables)
    existing = {("public", "kinds"), ("public", "events"), ("public", "notes")}
    kept = frozenset({"public notes notes_event_fkey ", "public events events_kind_fkey "})
    chosen = select(
        manifest, entries, tables=["public.events_a"], schemas=[],
        existing=existing, existing_schemas={"public"}, existing_keys=kept,
    )  # fmt: skip
    assert _ids(chosen.schema_entries) == [216, 3228, 3226]  # no foreign key: they exist
    assert _ids(chosen.attach_last) == [3225]
    assert chosen.attachments == [(("public", "events_a"), ("public", "events"))]

    # DROP TABLE events_a CASCADE took the foreign key of notes to events with it.
    cascaded = select(
        manifest, entries, tables=["public.events_a"], schemas=[],
        existing=existing, existing_schemas={"public"},
        existing_keys=frozenset({"public events events_kind_fkey "}),
    )  # fmt: skip
    assert _ids(cascaded.schema_entries) == [216, 3228, 3226, 3247, 3401]


def test_what_went_with_a_dropped_schema_comes_back_on_the_tables_that_remain():
    """DROP SCHEMA s CASCADE took the trigger of public.x that calls s.f: --schema s
    brings it back, though x was never dropped."""
    entries = parse(
        "5; 2615 16390 SCHEMA - s postgres\n"
        "200; 1255 16391 FUNCTION s f() postgres\n;\tdepends on: 5\n"
        "214; 1259 16392 TABLE public x postgres\n"
        "3300; 2620 16393 TRIGGER public x x_f postgres\n;\tdepends on: 200 214\n"
    )
    manifest = ManifestV2.model_construct(
        tables=[], parts=[], relations=[TableObjects(schema="public", table="x")]
    )
    chosen = select(
        manifest, entries, tables=[], schemas=["s"],
        existing={("public", "x")}, existing_schemas={"public"},
    )  # fmt: skip
    assert _ids(chosen.schema_entries) == [5, 200, 3300]
