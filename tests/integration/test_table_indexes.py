"""A streamed table's own indexes and keys are built as soon as its last part is loaded;
everything that needs another table, or would act on the loads, waits for post-data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pgautodumper import table_indexes, toc
from pgautodumper.manifest import ManifestV2
from pgautodumper.parallel_restore import fetch_schema_archive
from pgautodumper.pgtools import find_tool
from tests.conftest import run_cli
from tests.integration.format2 import (
    Databases,
    backup,
    contents,
    differences,
)

SQL = """
CREATE FUNCTION folded(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT lower($1)';
CREATE TABLE parents (id int PRIMARY KEY, code text NOT NULL, filler text);
CREATE UNIQUE INDEX parents_code ON parents (folded(code));
COMMENT ON INDEX parents_code IS 'codes are unique whatever their case';
INSERT INTO parents SELECT g, 'P' || g, repeat('p', 80) FROM generate_series(1, 30000) g;

CREATE TABLE children (
    id bigint PRIMARY KEY,
    parent_id int NOT NULL REFERENCES parents,
    note text,
    EXCLUDE USING btree (note WITH =)
);
CREATE INDEX children_parent ON children (parent_id);
-- Would rewrite every loaded row if it existed before the data was in.
CREATE FUNCTION shout() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $f$;
INSERT INTO children SELECT g, 1 + g % 30000, 'note ' || g || repeat('c', 60)
  FROM generate_series(1, 30000) g;
CREATE TRIGGER children_shout BEFORE INSERT ON children FOR EACH ROW EXECUTE FUNCTION shout();

CREATE TABLE events (id int NOT NULL, at date NOT NULL, body text, PRIMARY KEY (id, at))
    PARTITION BY RANGE (at);
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE INDEX events_at ON events (at);
INSERT INTO events SELECT g, '2026-01-01'::date + g % 365, repeat('e', 80)
  FROM generate_series(1, 30000) g;

CREATE TABLE small (id int PRIMARY KEY, parent_id int REFERENCES parents);
INSERT INTO small VALUES (1, 1);
"""


@pytest.fixture(scope="module")
def source(dbs: Databases) -> str:
    return dbs.create(SQL)


@pytest.fixture(scope="module")
def manifest(source: str, bucket_name: str) -> dict:
    return backup(source, bucket_name, "indexes")


def test_each_streamed_table_builds_only_what_is_its_own(
    bucket_name: str, manifest: dict, tmp_path: Path
) -> None:
    parsed = ManifestV2.model_validate(manifest)
    streamed = {(p.schema_name, p.table) for p in parsed.parts}
    assert {("public", "parents"), ("public", "children"), ("public", "events_2026")} <= streamed
    assert ("public", "small") not in streamed
    archive = fetch_schema_archive(bucket_name, parsed, tmp_path / "schema.dump")
    pg_restore = str(find_tool("pg_restore", 15).path)
    entries = toc.read(pg_restore, archive, dict(os.environ))

    early = table_indexes.own_indexes(entries, parsed.parts, parsed.table_names())

    built = {
        table: sorted(e.rest.split()[-2] for e in found) for (_, table), found in early.items()
    }
    assert built == {
        "parents": ["parents_code", "parents_pkey"],
        "children": ["children_note_excl", "children_parent", "children_pkey"],
        "events_2026": ["events_2026_at_idx", "events_2026_pkey"],
    }


def test_a_restore_that_builds_them_early_equals_the_source(
    dbs: Databases, source: str, bucket_name: str, manifest: dict
) -> None:
    expected = contents(source)
    for jobs in ("1", "2"):
        target = dbs.create()
        result = run_cli(
            "restore", "--bucket", bucket_name, "--key", manifest["schema_archive"]["key"],
            "--database-url", target, "--jobs", jobs,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        # The trigger came after the loads (no row was upper-cased); foreign keys,
        # partition index attachments and comments came back too.
        assert differences(expected, contents(target)) == {}
