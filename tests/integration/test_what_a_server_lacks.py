"""What a new server lacks of the source's: tablespaces and collations.

The target is a fresh PostgreSQL 18 server. The source keeps a streamed table,
its primary key and another table's index in a tablespace of its own, which the
target does not have: a restore names it before changing anything (or, where
only pg_restore finds it, names it as the cause), and ``--no-tablespaces``
restores everything into the database's default tablespace. Verify always does
that: its scratch server has no tablespace of the source's.

Collations of pg_catalog come from the operating system's locales at initdb, so
a server built elsewhere may lack one the source's columns use; the source here
gets one of its own in pg_catalog (a locale no other server has), which a
restore and a verify name before changing anything.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from collections.abc import Iterator

import psycopg
import pytest

from pgautodumper.scratch import SUPERUSER, ThrowawayPostgres
from tests.conftest import create_database

SPACE = f"pgad_space_{secrets.token_hex(3)}"
STREAMED = 1024 * 1024

SQL = f"""
CREATE TABLE big (id int PRIMARY KEY USING INDEX TABLESPACE {SPACE}, note text)
    TABLESPACE {SPACE};
INSERT INTO big SELECT g, repeat('n', 300) FROM generate_series(1, 20000) g;
CREATE TABLE small (id int);
CREATE INDEX small_id ON small (id) TABLESPACE {SPACE};
INSERT INTO small SELECT generate_series(1, 50);
"""

CONTENTS = (
    "SELECT (SELECT count(*) FROM big), (SELECT sum(id) FROM big), "
    "(SELECT count(*) FROM small), (SELECT count(*) FROM pg_catalog.pg_indexes "
    "WHERE tablename IN ('big', 'small'))"
)


@pytest.fixture(scope="module")
def source(pg: ThrowawayPostgres) -> Iterator[str]:
    folder = pg.root / SPACE
    folder.mkdir()
    if os.geteuid() == 0:
        shutil.chown(folder, SUPERUSER)
    pg.psql(f"CREATE TABLESPACE {SPACE} LOCATION '{folder}'")
    url = create_database(pg, SQL)
    yield url
    dbname = url.rsplit("/", 1)[1]
    pg.psql(f'DROP DATABASE "{dbname}"')
    pg.psql(f"DROP TABLESPACE {SPACE}")


def _backup(cli, url: str, bucket: str, *extra: str) -> dict:
    result = cli("backup", "--database-url", url, "--bucket", bucket, "--name", "spaces",
                 "--stream-threshold-bytes", str(STREAMED), "--json", *extra)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _relations(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT relname FROM pg_catalog.pg_class WHERE relnamespace = 'public'::regnamespace"
            " ORDER BY 1"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_server_without_the_tablespaces_is_named_and_no_tablespaces_restores(
    cli, source, bucket, pg18
):
    manifest = _backup(cli, source, bucket)
    assert manifest["tablespaces"] == [SPACE]
    assert any(p["table"] == "big" for p in manifest["parts"])  # streamed, not pg_dump's
    key = ["--bucket", bucket, "--key", manifest["manifest_key"]]

    target = create_database(pg18)
    refused = cli("restore", *key, "--database-url", target)
    assert refused.returncode == 23, refused.stderr
    assert SPACE in refused.stderr and "--no-tablespaces" in refused.stderr
    assert "nothing was restored" in refused.stderr and "Traceback" not in refused.stderr
    assert _relations(target) == []

    # A partial restore reaches pg_restore first: the cause is named, nothing is left.
    holder = create_database(pg18, "CREATE TABLE keep (id int)")
    partial = cli("restore", *key, "--database-url", holder, "--table", "public.big")
    assert partial.returncode == 23, partial.stderr
    assert SPACE in partial.stderr and "--no-tablespaces" in partial.stderr
    assert _relations(holder) == ["keep"]

    restored = cli("restore", *key, "--database-url", target, "--no-tablespaces")
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert a.execute(CONTENTS).fetchone() == b.execute(CONTENTS).fetchone()
        placed = b.execute(
            "SELECT count(*) FROM pg_catalog.pg_class WHERE reltablespace <> 0"
            " AND relnamespace = 'public'::regnamespace"
        ).fetchone()
    assert placed == (0,)

    # The scratch server has no tablespace of the source's either: verify still passes.
    verified = cli("verify", *key, "--scratch-local", "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["verdict"] == "passed"


def test_a_format1_backup_names_the_missing_tablespace_too(cli, source, bucket, pg18):
    manifest = _backup(cli, source, bucket, "--format", "1")
    key = ["--bucket", bucket, "--key", manifest["manifest_key"]]
    target = create_database(pg18)
    refused = cli("restore", *key, "--database-url", target)
    assert refused.returncode == 23, refused.stderr
    assert SPACE in refused.stderr and "--no-tablespaces" in refused.stderr
    restored = cli("restore", *key, "--database-url", target, "--clean", "--no-tablespaces")
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(source) as a, psycopg.connect(target) as b:
        assert a.execute(CONTENTS).fetchone() == b.execute(CONTENTS).fetchone()


def test_a_collation_the_server_lacks_is_named_before_anything_changes(cli, pg, bucket, pg18):
    collation = f"pgad_xx_{secrets.token_hex(3)}"
    source = create_database(pg, f"""
        CREATE COLLATION pg_catalog."{collation}" (provider = libc, locale = 'C.utf8');
        CREATE TABLE named (id int, name text COLLATE pg_catalog."{collation}");
        INSERT INTO named VALUES (1, 'one'), (2, 'two');
        CREATE TABLE plain (id int);
    """)  # fmt: skip
    manifest = _backup(cli, source, bucket)
    assert manifest["collations"] == [collation]
    key = ["--bucket", bucket, "--key", manifest["manifest_key"]]

    target = create_database(pg18)
    refused = cli("restore", *key, "--database-url", target)
    assert refused.returncode == 24, refused.stderr
    assert collation in refused.stderr and "pg_import_system_collations" in refused.stderr
    assert "nothing was restored" in refused.stderr and _relations(target) == []

    holder = create_database(pg18, "CREATE TABLE keep (id int)")
    partial = cli("restore", *key, "--database-url", holder, "--table", "public.named")
    assert partial.returncode == 24, partial.stderr
    assert collation in partial.stderr and _relations(holder) == ["keep"]

    # A scratch server that lacks it is not a failed backup: a WARN naming the collation
    # and the table it could not check, the rest checked.
    verified = cli("verify", *key, "--scratch-local", "--json")
    assert verified.returncode == 0, verified.stderr
    verdict = json.loads(verified.stdout)
    assert verdict["verdict"] == "warn"
    assert verdict["missing_collations"] == [collation]
    assert verdict["unchecked_tables"] == ["public.named"]
    assert collation in verdict["reason"]
    assert {t["table"]: t["restored_rows"] for t in verdict["tables"]}["public.plain"] == 0


def test_a_target_without_its_public_schema_is_named_before_anything_changes(
    cli, make_database, bucket, pg
):
    """Hardened templates drop public; pg_dump never creates it, so pre-data would stop
    at the first table there, after the backup's own schemas were made."""
    source = make_database(
        "CREATE SCHEMA app; CREATE TABLE app.a (id int); CREATE TABLE t (id int);"
    )
    manifest = _backup(cli, source, bucket)
    target = make_database("DROP SCHEMA public;")
    dbname = target.rsplit("/", 1)[1]

    refused = cli("restore", "--bucket", bucket, "--key", manifest["dump_key"],
                  "--database-url", target)  # fmt: skip

    assert refused.returncode == 22, refused.stderr
    assert "has no schema(s) public" in refused.stderr and "CREATE SCHEMA public" in refused.stderr
    assert "nothing was restored" in refused.stderr and "Traceback" not in refused.stderr
    assert pg.psql("SELECT count(*) FROM pg_namespace WHERE nspname = 'app'",
                   dbname=dbname).strip() == "0"  # fmt: skip
