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
# Three levels of partitions, keys between partitioned tables, triggers on them, and
# comments on what post-data leaves for after itself (toc.partitioned_steps).
DEEP = """
CREATE TABLE acct (id int NOT NULL, region int NOT NULL, name text, PRIMARY KEY (id, region))
  PARTITION BY LIST (region);
CREATE TABLE acct_0 PARTITION OF acct FOR VALUES IN (0) PARTITION BY HASH (id);
CREATE TABLE acct_0a PARTITION OF acct_0 FOR VALUES WITH (MODULUS 2, REMAINDER 0);
CREATE TABLE acct_0b PARTITION OF acct_0 FOR VALUES WITH (MODULUS 2, REMAINDER 1);
CREATE TABLE acct_1 PARTITION OF acct FOR VALUES IN (1);
CREATE TABLE acct_2 PARTITION OF acct FOR VALUES IN (2);
CREATE TABLE orders (id int NOT NULL, region int NOT NULL, acct int NOT NULL,
  at date NOT NULL, amount numeric, PRIMARY KEY (id, region, at),
  FOREIGN KEY (acct, region) REFERENCES acct) PARTITION BY RANGE (at);
CREATE TABLE orders_a PARTITION OF orders FOR VALUES FROM ('2024-01-01') TO ('2024-04-01')
  PARTITION BY LIST (region);
CREATE TABLE orders_a0 PARTITION OF orders_a FOR VALUES IN (0);
CREATE TABLE orders_a1 PARTITION OF orders_a DEFAULT;
CREATE TABLE orders_b PARTITION OF orders FOR VALUES FROM ('2024-04-01') TO ('2024-07-01');
CREATE TABLE orders_c PARTITION OF orders DEFAULT;
CREATE TABLE lines (order_id int NOT NULL, region int NOT NULL, at date NOT NULL, n int,
  FOREIGN KEY (order_id, region, at) REFERENCES orders) PARTITION BY HASH (order_id);
CREATE TABLE lines_0 PARTITION OF lines FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE lines_1 PARTITION OF lines FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE lines_2 PARTITION OF lines FOR VALUES WITH (MODULUS 3, REMAINDER 2);
CREATE INDEX ON orders (acct);
CREATE INDEX ON orders (amount);
CREATE INDEX ON lines (n);
CREATE INDEX ON acct (name);
CREATE FUNCTION t() RETURNS trigger LANGUAGE plpgsql AS $f$ BEGIN RETURN NEW; END $f$;
CREATE TRIGGER o_t BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION t();
CREATE TRIGGER l_t AFTER INSERT ON lines FOR EACH ROW EXECUTE FUNCTION t();
INSERT INTO acct SELECT g, g % 3, 'a' || g FROM generate_series(1, 3000) g;
INSERT INTO orders SELECT g, a.region, a.id, '2024-01-01'::date + g % 300, g
  FROM generate_series(1, 60000) g JOIN acct a ON a.id = 1 + g % 3000;
INSERT INTO lines SELECT o.id, o.region, o.at, 1 FROM orders o;
ALTER TABLE orders ADD CONSTRAINT amount_positive CHECK (amount > 0) NOT VALID;
COMMENT ON CONSTRAINT orders_acct_region_fkey ON orders IS 'a key of a partitioned table';
CREATE TABLE audit (order_id int, region int, at date,
  FOREIGN KEY (order_id, region, at) REFERENCES orders);
COMMENT ON CONSTRAINT audit_order_id_region_at_fkey ON audit IS 'a key to a partitioned table';
CREATE FUNCTION quiet() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN END $f$;
CREATE EVENT TRIGGER quiet ON ddl_command_end EXECUTE FUNCTION quiet();
COMMENT ON EVENT TRIGGER quiet IS 'created last';
"""
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


def test_partitions_three_levels_deep_restore_at_four_jobs(dbs, bucket_name):
    """Every partitioned index valid, every key back (index attachments side by side
    left a parent index invalid, and a foreign key to it failed)."""
    source = dbs.create(DEEP)
    manifest = backup(source, bucket_name, "deep")
    target = dbs.create()

    restored = _restore(bucket_name, manifest, target, "--jobs", "4")

    assert restored.returncode == 0, restored.stderr
    assert differences(contents(source), contents(target)) == {}


def _restore(bucket: str, manifest: dict, target: str, *args: str):
    return run_cli(
        "restore", "--bucket", bucket, "--key", schema_key(manifest), "--database-url", target,
        "--jobs", "2", *args,
    )  # fmt: skip
