"""Format 2 end to end: a database made of what breaks restores comes back equal,
table by table — by restore (in parallel, from S3), by verify, and by export | psql."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD, run_cli, verify_leftovers
from tests.integration.format2 import (
    DATA,
    EXTENSION,
    EXTENSION_SQL,
    Databases,
    backup,
    contents,
    databases,
    differences,
    fixture_extension,
    schema_key,
)

pytestmark = pytest.mark.background

FIDELITY_SQL = (DATA / "fidelity.sql").read_text()
EVENTS = 'Ünïcødé "Schema".x.Big*Table."Quoted" ÉVÉNEMENTS'


@pytest.fixture(scope="module")
def dbs(pg: ThrowawayPostgres) -> Iterator[Databases]:
    with fixture_extension(pg), databases(pg) as created:
        yield created


@pytest.fixture(scope="module")
def source(dbs: Databases) -> str:
    return dbs.create(FIDELITY_SQL + EXTENSION_SQL)


@pytest.fixture(scope="module")
def manifest(source: str, bucket_name: str) -> dict:
    return backup(source, bucket_name, "fidelity")


@pytest.fixture(scope="module")
def expected(source: str, manifest: dict) -> dict:
    return contents(source)


def test_big_tables_stream_in_parts_the_rest_goes_to_pg_dump(manifest):
    assert manifest["format_version"] == 2
    parts = Counter(f"{p['schema']}.{p['table']}" for p in manifest["parts"])
    assert parts[EVENTS] >= 2 and parts["public.cars"] >= 2  # several parts each
    assert parts["public.metrics_2023"] and parts["public.metrics_2024"]  # leaf partitions
    frozen = {f"{p['schema']}.{p['table']}" for p in manifest["parts"] if p["freeze"]}
    assert {"public.vehicles", "public.vault", "public.cache"} <= frozen
    assert not frozen & {EVENTS, "public.cars", "public.metrics_2023"}
    # Loaded via their root by pg_dump; small tables and extension tables too.
    assert not {t for t in parts if t.startswith("public.feelings")}
    assert not {t for t in parts if t.startswith(("small.", "public.pgad_fixture"))}
    events = next(p for p in manifest["parts"] if p["table"].startswith("Big*"))
    assert "junk" not in events["columns"] and "total" not in events["columns"]


def test_restore_equals_the_source_table_by_table(dbs, bucket_name, manifest, expected):
    target = dbs.create()
    result = run_cli(
        "restore", "--bucket", bucket_name, "--key", schema_key(manifest), "--database-url",
        target, "--jobs", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["parts"] == len(manifest["parts"])
    assert BACKUP_PASSWORD not in result.stdout + result.stderr

    actual = contents(target)
    assert differences(expected, actual) == {}
    assert len([k for k in actual if k.startswith("table small.")]) == 1000
    assert len(actual["large_objects"]) == 2
    assert ("public", "invoice_no", 424242) in actual["sequences"]
    with psycopg.connect(target, autocommit=True) as conn:
        assert conn.execute(
            "SELECT relrowsecurity, relforcerowsecurity, pg_get_userbyid(relowner)"
            " FROM pg_class WHERE relname = 'vault'"
        ).fetchone() == (True, True, "pgad_backup")
        assert conn.execute("SELECT polname FROM pg_policy").fetchall() == [("own_rows",)]
        assert conn.execute("SELECT key FROM pgad_fixture_config ORDER BY 1").fetchall() == [
            ("builtin",),
            ("mine",),
        ]
        # The single-part tables were loaded by COPY FREEZE: every page is all-frozen.
        conn.execute("CREATE EXTENSION pg_visibility")
        frozen = conn.execute("SELECT * FROM pg_visibility_map_summary('vehicles')").fetchone()
        assert frozen is not None and frozen[0] > 0 and frozen[1] == frozen[0]


def test_clean_restore_replaces_a_changed_database(dbs, bucket_name, manifest, expected):
    target = dbs.create()
    first = run_cli("restore", "--bucket", bucket_name, "--key", schema_key(manifest),
                    "--database-url", target)  # fmt: skip
    assert first.returncode == 0, first.stderr
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DELETE FROM tags; DELETE FROM vehicles WHERE id > 100; DROP TABLE small.t1")
        conn.execute("CREATE TABLE leftover (id int REFERENCES vehicles (id))")

    refused = run_cli("restore", "--bucket", bucket_name, "--key", schema_key(manifest),
                      "--database-url", target)  # fmt: skip
    assert refused.returncode == 14, refused.stderr
    assert "not empty" in refused.stderr and "--clean" in refused.stderr

    cleaned = run_cli("restore", "--bucket", bucket_name, "--key", schema_key(manifest),
                      "--database-url", target, "--clean", "--analyze")  # fmt: skip
    # pg_restore --clean would stop on the same foreign key: a table not in the backup
    # that references one of its tables has to go first.
    assert cleaned.returncode == 22, cleaned.stderr
    assert "dropping the objects to replace failed" in cleaned.stderr
    assert "constraint leftover_id_fkey on table public.leftover depends on" in cleaned.stderr
    with psycopg.connect(target, autocommit=True) as conn:
        conn.execute("DROP TABLE leftover")
    cleaned = run_cli("restore", "--bucket", bucket_name, "--key", schema_key(manifest),
                      "--database-url", target, "--clean", "--analyze")  # fmt: skip
    assert cleaned.returncode == 0, cleaned.stderr
    assert differences(expected, contents(target)) == {}
    with psycopg.connect(target, autocommit=True) as conn:
        assert conn.execute(
            "SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL"
            " FROM pg_stat_user_tables WHERE relname = 'cars'"
        ).fetchone() == (True,)


def test_verify_passes_and_records_restore_seconds(pg, bucket_name, manifest, s3):
    result = run_cli(
        "verify", "--bucket", bucket_name, "--key", schema_key(manifest), "--scratch-url",
        pg.url("pgad_backup", BACKUP_PASSWORD, "postgres"), "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    key = manifest["manifest_key"].replace(".manifest.json", ".verified.json")
    verdict = json.loads(s3.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    assert verdict["verdict"] == "passed" and verdict["sha256_ok"] is True
    assert verdict["restore_seconds"] > 0
    assert verdict["dump_key"] == schema_key(manifest)
    checked = {t["table"]: t for t in verdict["tables"]}
    assert checked[EVENTS]["restored_rows"] == 40000
    # Enum hash partitions are compared through their root (rows may change partition).
    assert checked["public.feelings"]["restored_rows"] == 30000
    assert "public.feelings_0" not in checked
    assert verify_leftovers(pg, manifest) == []


def test_export_loads_with_psql_alone(dbs, bucket_name, manifest, expected, tmp_path):
    target = dbs.create()
    script = tmp_path / "export.sql"
    with script.open("wb") as out:
        exported = subprocess.run(
            [sys.executable, "-m", "pgautodumper", "export", "--bucket", bucket_name,
             "--key", schema_key(manifest)],
            stdout=out, stderr=subprocess.PIPE, text=False, check=False, timeout=300,
        )  # fmt: skip
    assert exported.returncode == 0, exported.stderr.decode()
    text = script.read_bytes()
    assert b"pgautodumper: the tables streamed by COPY" in text
    assert BACKUP_PASSWORD.encode() not in text
    loaded = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(script),
         target],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert differences(expected, contents(target)) == {}


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_extensions_made_ahead_are_kept_and_one_only_a_superuser_makes_is_named(
    pg, dbs, bucket_name, backup_format
):
    """A target where the extensions exist already (their tables do not make it "not
    empty"); and a restoring role that may not create an untrusted one."""
    source = dbs.create(EXTENSION_SQL)
    made = backup(source, bucket_name, "extensions", "--format", backup_format)
    key = ["--bucket", bucket_name, "--key", schema_key(made)]

    ahead = dbs.create(f"CREATE EXTENSION {EXTENSION}")
    restored = run_cli("restore", *key, "--database-url", ahead)
    assert restored.returncode == 0, restored.stderr
    with psycopg.connect(ahead) as conn:
        rows = conn.execute("SELECT key FROM pgad_fixture_config ORDER BY 1").fetchall()
    assert rows == [("builtin",), ("mine",)]

    role = f"pgad_owner_{secrets.token_hex(3)}"
    dbname = dbs.create().rsplit("/", 1)[1]
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{BACKUP_PASSWORD}'")
    try:
        pg.psql(f'ALTER DATABASE "{dbname}" OWNER TO {role}')
        denied = run_cli(
            "restore", *key, "--no-owner",
            "--database-url", pg.url(role, BACKUP_PASSWORD, dbname),
        )  # fmt: skip
        assert denied.returncode == 19, denied.stderr
        assert f"may not create extension '{EXTENSION}'" in denied.stderr  # not trusted
        assert "only a superuser may" in denied.stderr and "Traceback" not in denied.stderr
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        pg.psql(f"DROP ROLE IF EXISTS {role}")
