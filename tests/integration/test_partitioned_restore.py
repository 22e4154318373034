"""Partitioned tables with keys and indexes of their own: a partition restored alone into
the table that holds it (but for one whose rows load through it), and a --clean restore
over them (both formats).

Both used to fail on what PostgreSQL does for a partition: attached to a parent that
has keys and indexes, it gets them, so the partition's own collided ("relation ...
already exists"); attached, its share of the parent's key cannot be dropped ("cannot
drop inherited constraint"). ``contents`` compares partition bounds, index and key
inheritance, not only rows.
"""

from __future__ import annotations

import psycopg
import pytest

from tests.conftest import run_cli
from tests.integration.format2 import Databases, backup, contents, differences, schema_key

pytestmark = pytest.mark.background

# events_a: built apart with another column order and a dropped column, then attached;
# events_b: partitioned again. A key, an index and a check on the root, a foreign key
# from it.
SQL = """
CREATE TABLE kinds (kind text PRIMARY KEY);
INSERT INTO kinds VALUES ('a'), ('b');
CREATE TABLE events (id int NOT NULL, kind text NOT NULL REFERENCES kinds, at date NOT NULL,
                     pad text, PRIMARY KEY (id, kind, at)) PARTITION BY LIST (kind);
CREATE TABLE events_a (gone int, pad text, at date NOT NULL, kind text NOT NULL,
                       id int NOT NULL);
ALTER TABLE events_a DROP COLUMN gone;
ALTER TABLE events ATTACH PARTITION events_a FOR VALUES IN ('a');
CREATE TABLE events_b PARTITION OF events FOR VALUES IN ('b') PARTITION BY RANGE (at);
CREATE TABLE events_b_old PARTITION OF events_b FOR VALUES FROM (MINVALUE) TO ('2024-06-01');
CREATE TABLE events_b_new PARTITION OF events_b DEFAULT;
CREATE INDEX events_at ON events (at);
CREATE INDEX events_a_pad ON events_a (pad);
INSERT INTO events
SELECT g, (ARRAY['a', 'b'])[1 + g % 2], '2024-01-01'::date + g % 300, repeat('p', 80)
  FROM generate_series(1, 30000) g;
-- pg_dump writes a NOT VALID check apart, on the partitioned table alone.
ALTER TABLE events ADD CONSTRAINT events_id_positive CHECK (id > 0) NOT VALID;
"""


# An audit of DDL, as some databases keep: were it created before the restore's last
# statements, they would be logged in the restored database and not in the source.
AUDITED = (
    SQL
    + """
CREATE TABLE ddl_log (tag text);
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $f$
BEGIN INSERT INTO public.ddl_log SELECT command_tag FROM pg_event_trigger_ddl_commands(); END
$f$;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end EXECUTE FUNCTION log_ddl();
-- A view and a function that depend on each other: pg_dump splits the view's rule out,
-- and its DROP empties the view so that the function can go first.
CREATE VIEW loop_v AS SELECT 1 AS id;
CREATE FUNCTION loop_f() RETURNS SETOF loop_v LANGUAGE sql AS $f$ SELECT * FROM loop_v $f$;
CREATE OR REPLACE VIEW loop_v AS SELECT 1 AS id WHERE NOT EXISTS (SELECT FROM loop_f() WHERE false);
"""
)
# pg_dump loads the partitions of a table hash-partitioned on an enum through the table.
HASHED = """
CREATE TYPE color AS ENUM ('red', 'green', 'blue');
CREATE TABLE paint (id int, c color NOT NULL, PRIMARY KEY (id, c)) PARTITION BY HASH (c);
CREATE TABLE paint0 PARTITION OF paint FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE paint1 PARTITION OF paint FOR VALUES WITH (MODULUS 2, REMAINDER 1);
INSERT INTO paint SELECT g, (ARRAY['red', 'green', 'blue']::color[])[1 + g % 3]
  FROM generate_series(1, 3000) g;
"""


@pytest.fixture(scope="module")
def source(dbs: Databases) -> str:
    return dbs.create(SQL)


@pytest.fixture(scope="module")
def expected(source: str) -> dict:
    return contents(source)


@pytest.mark.parametrize(
    ("drop", "table"),
    [
        ("DROP TABLE events_a", "public.events_a"),
        ("DROP TABLE events_b", "public.events_b"),  # with its own partitions
    ],
)
def test_a_partition_comes_back_into_its_table(dbs, source, bucket_name, expected, drop, table):
    manifest = backup(source, bucket_name, "events")
    target = dbs.create(SQL)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute(drop)

    restored = _restore(bucket_name, manifest, target, "--table", table)
    assert restored.returncode == 0, restored.stderr
    assert differences(expected, contents(target)) == {}

    again = _restore(bucket_name, manifest, target, "--table", table, "--clean")
    assert again.returncode == 0, again.stderr
    assert differences(expected, contents(target)) == {}


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_clean_restore_replaces_partitioned_keys(dbs, bucket_name, backup_format):
    source = dbs.create(AUDITED)
    expected = contents(source)
    manifest = backup(source, bucket_name, f"events-f{backup_format}", "--format", backup_format)
    target = dbs.create(AUDITED)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DELETE FROM events WHERE id % 7 = 0")

    cleaned = _restore(bucket_name, manifest, target, "--clean")

    assert cleaned.returncode == 0, cleaned.stderr
    assert differences(expected, contents(target)) == {}


def test_a_partition_loaded_through_its_table_comes_back_only_with_it(dbs, bucket_name):
    """Its rows go wherever the enum's hash sends them, which differs between databases."""
    source = dbs.create(HASHED)
    manifest = backup(source, bucket_name, "paint")
    target = dbs.create(HASHED)
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP TABLE paint1")

    refused = _restore(bucket_name, manifest, target, "--table", "public.paint1")
    assert refused.returncode == 2, refused.stderr
    assert "partitions of public.paint cannot be restored alone" in refused.stderr
    assert "--table public.paint --clean" in refused.stderr

    whole = _restore(bucket_name, manifest, target, "--table", "public.paint", "--clean")
    assert whole.returncode == 0, whole.stderr
    assert differences(contents(source), contents(target)) == {}


def _restore(bucket: str, manifest: dict, target: str, *args: str):
    return run_cli(
        "restore", "--bucket", bucket, "--key", schema_key(manifest), "--database-url", target,
        "--jobs", "2", *args,
    )  # fmt: skip
