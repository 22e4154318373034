"""Reading pg_restore's TOC listing, and naming tables for a partial restore."""

from __future__ import annotations

import pytest

from pgautodumper import schema_grants
from pgautodumper.errors import UsageError
from pgautodumper.selection import parse_table
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
