"""Format-2 backups hold exactly the snapshot's rows: columns, inheritance, partitions, names.

Each backup is read back by hand (pg_restore and psql, see
test_format2_backup_support) and compared with its source.
"""

from __future__ import annotations

import re
from collections import defaultdict

import psycopg
import pytest

from pgautodumper import parallel_backup, plan, storage
from pgautodumper.backup import BackupOptions
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import DumpFailedError
from pgautodumper.parallel_backup import run_parallel_backup
from pgautodumper.snapshot import count_rows
from tests.integration.test_format2_backup_support import (
    THRESHOLD,
    MiB,
    assert_nothing_stored,
    check_objects,
    data_archive_toc,
    finish,
    manifest_of,
    part_rows,
    restore_by_hand,
    start_backup,
    stored_manifest,
)
from tests.pgcompare import fingerprint

SHAPES = """
-- generated and dropped columns: neither is in COPY's column list
CREATE TABLE gen (id int PRIMARY KEY, gone_a text, payload text,
                  doubled int GENERATED ALWAYS AS (id * 2) STORED, gone_b int);
INSERT INTO gen (id, gone_a, payload, gone_b)
SELECT g, 'x', repeat(md5(g::text), 3), g FROM generate_series(1, 20000) g;
ALTER TABLE gen DROP COLUMN gone_a, DROP COLUMN gone_b;

-- inheritance: the parent and the child each stream their own rows
CREATE TABLE parent (id int, note text);
CREATE TABLE child (extra int) INHERITS (parent);
INSERT INTO parent SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 15000) g;
INSERT INTO child SELECT g, repeat(md5(g::text), 2), g FROM generate_series(100001, 125000) g;

-- hash partitioning on an enum: pg_dump loads these through the root, they never stream
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy', 'calm');
CREATE TABLE feelings (m mood, id int, payload text) PARTITION BY HASH (m);
CREATE TABLE feelings_0 PARTITION OF feelings FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE feelings_1 PARTITION OF feelings FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO feelings
SELECT (ARRAY['sad', 'ok', 'happy', 'calm'])[1 + g % 4]::mood, g, repeat(md5(g::text), 3)
  FROM generate_series(1, 40000) g;

-- range partitioning: leaf partitions stream
CREATE TABLE events (id int, at date, payload text) PARTITION BY RANGE (at);
CREATE TABLE events_2024 PARTITION OF events FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO events SELECT g, '2024-01-01'::date + g % 700, repeat(md5(g::text), 2)
  FROM generate_series(1, 30000) g;

-- big enough to stream, but every row deleted (no vacuum may shrink it)
CREATE TABLE emptied (id int, payload text) WITH (autovacuum_enabled = off);
INSERT INTO emptied SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 15000) g;
DELETE FROM emptied;

-- rows, but only dropped columns: every row is an empty line
CREATE TABLE hollow (payload text);
INSERT INTO hollow SELECT repeat(md5(g::text), 3) FROM generate_series(1, 15000) g;
ALTER TABLE hollow DROP COLUMN payload;

-- a few big values: TOAST is big, the heap is one page, so one part (never an empty range)
CREATE TABLE toasty (id int, doc text);
ALTER TABLE toasty ALTER COLUMN doc SET STORAGE EXTERNAL;
INSERT INTO toasty SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')
                                FROM generate_series(1, 40000) i)
  FROM generate_series(1, 3) g;

-- small ones, left to pg_dump
CREATE TABLE nothing (id int);
CREATE TABLE small (id serial PRIMARY KEY, v text);
INSERT INTO small (v) VALUES ('one'), (E'tab\\there, newline\\nthere, backslash \\\\');
"""


def test_a_table_is_never_split_into_more_ranges_than_it_has_pages():
    assert plan.ranges(1, 4) == [None]
    assert len(plan.ranges(3, 8)) == 3
    assert plan.ranges(10, 2) == [
        "ctid < '(5,0)'::pg_catalog.tid",
        "ctid >= '(5,0)'::pg_catalog.tid",
    ]


@pytest.mark.parametrize("estimate_gib", [0, 1, 50, 1000, 2400, 2600, 5000, 100_000])
def test_a_streams_part_size_stays_small_unless_its_object_is_huge(estimate_gib):
    """Part buffers are per running stream: 5 MiB whatever the database's size, larger only
    when one object would not fit in 10,000 growing parts twice over."""
    estimate = estimate_gib * 1024 * MiB
    size = parallel_backup.first_part_size(estimate)
    assert parallel_backup.capacity(size) >= 2 * estimate or size == storage.MAX_PART_SIZE
    assert size == 5 * MiB or parallel_backup.capacity(size // 2) < 2 * estimate
    if estimate_gib <= 2400:
        assert size == 5 * MiB


def table_size(url: str, table: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_table_size(%s::regclass)", (table,)).fetchone()[0]


def parts_by_table(manifest) -> dict[str, list]:
    found: dict[str, list] = defaultdict(list)
    for part in manifest.parts:
        found[part.qualified].append(part)
    return found


def test_columns_inheritance_partitions_and_empty_tables(pg, make_database, bucket, s3):
    source = make_database(SHAPES)
    feelings = {t: table_size(source, t) for t in ("feelings_0", "feelings_1")}
    assert max(feelings.values()) >= THRESHOLD  # big enough to stream, if it were allowed
    before = fingerprint(source)
    with psycopg.connect(source) as conn:
        expected = {t.qualified: t.rows for t in count_rows(conn)}
        parent_only = conn.execute("SELECT count(*) FROM ONLY parent").fetchone()[0]

    code, stdout, stderr = finish(
        start_backup(source, bucket, "--stream-threshold-bytes", str(THRESHOLD), "--jobs", "2")
    )

    assert code == 0, stderr
    manifest = manifest_of(stdout)
    assert stored_manifest(s3, bucket, manifest) == manifest
    check_objects(s3, bucket, manifest)  # sha256, sizes, and lines == COPY's rows
    parts = parts_by_table(manifest)
    assert set(parts) == {
        "public.gen", "public.parent", "public.child", "public.events_2024",
        "public.events_2025", "public.emptied", "public.hollow", "public.toasty",
    }  # fmt: skip
    assert [p.rows for p in parts["public.toasty"]] == [3]
    assert len(parts["public.gen"]) > 1  # split into ctid ranges
    assert {tuple(p.columns) for p in parts["public.gen"]} == {("id", "payload")}
    assert {tuple(p.columns) for p in parts["public.parent"]} == {("id", "note")}
    assert {tuple(p.columns) for p in parts["public.child"]} == {("id", "note", "extra")}
    assert {tuple(p.columns) for p in parts["public.hollow"]} == {()}
    # FROM ONLY: the parent's parts hold its own rows, the child's its own
    assert sum(p.rows for p in parts["public.parent"]) == parent_only == 15000
    assert sum(p.rows for p in parts["public.child"]) == 25000
    assert sum(p.rows for p in parts["public.hollow"]) == 15000
    assert sum(p.rows for p in parts["public.emptied"]) == 0
    assert not any(p.freeze for t in ("public.events_2024", "public.events_2025") for p in parts[t])
    # The counts are those verify takes (count(*): a parent's includes its children's rows).
    assert manifest.row_counts() == expected
    assert expected["public.parent"] == 40000
    # pg_dump kept the enum-hash partitions (loaded via their root) and the small tables
    toc = data_archive_toc(s3, bucket, manifest)
    assert {"public feelings_0", "public feelings_1", "public nothing", "public small"} <= set(toc)
    assert not {f"public {t.split('.')[1]}" for t in parts} & set(toc)

    restored = restore_by_hand(pg, s3, bucket, manifest)
    after = fingerprint(restored)
    # The restore's enum OIDs differ, so the root sends rows to other hash partitions
    # (why they are loaded through it): compare those through the root.
    moved = {"table public.feelings_0", "table public.feelings_1"}
    assert {k: v for k, v in after.items() if k not in moved} == {
        k: v for k, v in before.items() if k not in moved
    }
    assert rows_of(restored, "feelings") == rows_of(source, "feelings")
    assert rows_of(restored, "gen") == rows_of(source, "gen")  # generated values recomputed


def rows_of(url: str, table: str) -> tuple:
    with psycopg.connect(url) as conn:
        return conn.execute(
            f"SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {table} t"
        ).fetchone()


ODD = """
CREATE SCHEMA "Odd ""S"".x*";
CREATE SCHEMA a;
CREATE TABLE "Odd ""S"".x*"."Ta.b*le ""q"" é€ UPPER" (id int, "Col ""1"".*" text, "ünï" text);
CREATE TABLE "Odd ""S"".x*"."Ta.b*le ""q"" é€ UPPERx" (id int);
CREATE TABLE public."a.b" (id int, v text);
CREATE TABLE a.b (id int);
CREATE TABLE public."big*" (id int, v text);
CREATE TABLE public.bigger (id int);
CREATE TABLE public."MixedCase" (id int, v text);
CREATE TABLE public.mixedcase (id int);
CREATE TABLE public."what?" (id int, v text);
CREATE TABLE public.whatx (id int);
INSERT INTO "Odd ""S"".x*"."Ta.b*le ""q"" é€ UPPER"
SELECT g, repeat(md5(g::text), 2) || E' "\\t\\\\. *', 'é€ ü ' || g FROM generate_series(1, 15000) g;
INSERT INTO "Odd ""S"".x*"."Ta.b*le ""q"" é€ UPPERx" VALUES (1), (2);
INSERT INTO public."a.b" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;
INSERT INTO a.b VALUES (1), (2), (3);
INSERT INTO public."big*" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;
INSERT INTO public.bigger VALUES (1), (2), (3), (4);
INSERT INTO public."MixedCase" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;
INSERT INTO public.mixedcase VALUES (5);
INSERT INTO public."what?" SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;
INSERT INTO public.whatx VALUES (6), (7);
"""

STEM_KEY = re.compile(
    r"^odd/\d{4}/\d{2}/\d{2}/\d{8}T\d{6}Z-[0-9a-f]+"
    r"\.(schema\.dump\.zst|data\.dump\.zst|part-\d{5}\.copy\.zst|roles\.json\.zst|manifest\.json)$"
)


def test_odd_names_stream_and_never_reach_a_key(pg, make_database, bucket, s3):
    """Quotes, dots, '*', '?', unicode and upper case: every streamed table is excluded from
    pg_dump's data exactly (its near-namesakes are not), and no key names a table."""
    source = make_database(ODD)
    before = fingerprint(source)

    code, stdout, stderr = finish(
        start_backup(
            source, bucket, "--stream-threshold-bytes", str(THRESHOLD), "--jobs", "2",
            "--name", "odd",
        )
    )  # fmt: skip

    assert code == 0, stderr
    manifest = manifest_of(stdout)
    check_objects(s3, bucket, manifest)
    assert {(p.schema_name, p.table) for p in manifest.parts} == {
        ('Odd "S".x*', 'Ta.b*le "q" é€ UPPER'), ("public", "a.b"), ("public", "big*"),
        ("public", "MixedCase"), ("public", "what?"),
    }  # fmt: skip
    odd = next(p for p in manifest.parts if p.table.startswith("Ta.b"))
    assert odd.columns == ["id", 'Col "1".*', "ünï"]
    assert "é€ ü 1" in {row[2] for row in part_rows(s3, bucket, odd)}
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(STEM_KEY.match(key) for key in keys), keys
    restored = restore_by_hand(pg, s3, bucket, manifest)
    assert fingerprint(restored) == before  # near-namesakes kept, nothing twice


def test_parts_are_in_the_databases_encoding_whatever_the_client_asks(
    pg, make_database, bucket, s3
):
    """A role, database or PGCLIENTENCODING asking for LATIN1 does not change the parts:
    they are in the database's encoding (UTF8), as pg_dump's archives are."""
    source = make_database(
        "CREATE TABLE words (id int, w text);"
        "INSERT INTO words SELECT g, repeat(md5(g::text), 3) || ' é ü ß' FROM "
        "generate_series(1, 12000) g;"
    )
    dbname = source.rsplit("/", 1)[1]
    pg.psql(f"ALTER DATABASE \"{dbname}\" SET client_encoding = 'LATIN1'")
    before = fingerprint(source)

    code, stdout, stderr = finish(
        start_backup(
            source, bucket, "--stream-threshold-bytes", str(THRESHOLD),
            env={"PGCLIENTENCODING": "LATIN1"},
        )
    )  # fmt: skip

    assert code == 0, stderr
    manifest = manifest_of(stdout)
    assert manifest.parts
    rows = [row for part in manifest.parts for row in part_rows(s3, bucket, part)]
    assert len(rows) == 12000
    assert all(row[1].endswith(" é ü ß") for row in rows)  # decoded as UTF-8
    assert fingerprint(restore_by_hand(pg, s3, bucket, manifest)) == before


def test_a_copy_whose_lines_differ_from_its_row_count_is_refused(
    make_database, bucket, s3, monkeypatch
):
    """Rows come from COPY's command tag and must equal the lines streamed: a stray line
    on psql's stdout (here an injected \\echo) fails the backup, nothing is stored."""
    source = make_database(
        "CREATE TABLE t (id int, v text);"
        "INSERT INTO t SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;"
    )
    original = parallel_backup.copy_out_script

    def with_a_stray_line(snapshot_id, part):
        return original(snapshot_id, part).replace("\\warn", "\\echo stray\n\\warn")

    monkeypatch.setattr(parallel_backup, "copy_out_script", with_a_stray_line)
    with pytest.raises(DumpFailedError, match=r"COPY reported \d+ rows but \d+ lines"):
        run_parallel_backup(
            ConnectionInfo.from_url(source),
            BackupOptions(bucket=bucket, name="stray", stream_threshold_bytes=MiB, jobs=2),
        )
    assert_nothing_stored(s3, bucket)
