"""Backup → restore → verify of a database rich in types and objects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgautodumper import layout
from tests.conftest import BACKUP_PASSWORD
from tests.pgcompare import fingerprint

RICH_SQL = (Path(__file__).parent.parent / "data" / "rich.sql").read_text()


def stored_objects(manifest: dict) -> list[str]:
    """Every data object a manifest (format 1 or 2) lists."""
    if manifest["format_version"] == 1:
        return [manifest["dump_key"]]
    extra = [manifest["roles"]["key"]] if manifest.get("roles") else []
    return [
        manifest["schema_archive"]["key"],
        manifest["data_archive"]["key"],
        *(part["key"] for part in manifest["parts"]),
        *extra,
    ]


@pytest.mark.parametrize("format_version", ["1", "2"])
def test_restored_database_equals_source(cli, make_database, bucket, s3, format_version):
    source = make_database(RICH_SQL)
    target = make_database()

    backup = cli(
        "backup", "--database-url", source, "--bucket", bucket, "--name", "rich", "--json",
        "--format", format_version, "--stream-threshold-bytes", str(1024 * 1024),
    )  # fmt: skip
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    restored = cli(
        "restore", "--bucket", bucket, "--latest", "--name", "rich", "--database-url", target
    )
    assert restored.returncode == 0, restored.stderr

    expected, actual = fingerprint(source), fingerprint(target)
    assert actual == expected
    assert expected["large_objects"] and len(expected["large_objects"]) == 2
    assert ("public", "invoice_no", 424242) in expected["sequences"]

    sizes = {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert sum(sizes[key] for key in stored_objects(manifest)) == manifest["stored_bytes"]
    counts = {f"{t['schema']}.{t['table']}": t["rows"] for t in manifest["tables"]}
    assert counts["Odd Schema.Mixed Case Table"] == 2001
    assert counts["public.measurements_2024"] == 366
    assert counts["public.cache_entries"] == 500
    assert counts["public.empty_table"] == 0
    assert "public.measurements" not in counts  # the partitioned parent holds no rows itself
    for output in (backup, restored):
        assert BACKUP_PASSWORD not in output.stdout + output.stderr


def test_layout_manifest_written_last_and_verify_records_verdict(cli, make_database, bucket, s3):
    source = make_database(RICH_SQL)
    backup = cli(
        "backup",
        "--database-url",
        source,
        "--bucket",
        bucket,
        "--prefix",
        "team/a",
        "--name",
        "rich",
        "--run-id",
        "exec-42",
        "--json",
    )
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    keys = layout.keys_for(manifest["dump_key"])
    assert manifest["dump_key"].startswith("team/a/rich/")
    assert keys.run_id == "exec-42" and manifest["manifest_key"] == keys.manifest

    objects = s3.list_objects_v2(Bucket=bucket)["Contents"]
    by_key = {o["Key"]: o["LastModified"] for o in objects}
    assert all(by_key[keys.manifest] >= by_key[key] for key in stored_objects(manifest))
    assert manifest["format_version"] == 2
    assert manifest["server_version_num"] >= 130000
    assert manifest["pg_dump_version"].split(".")[0] == str(manifest["server_version_num"] // 10000)

    verified = cli(
        "verify",
        "--bucket",
        bucket,
        "--key",
        keys.manifest,
        "--scratch-url",
        source.rsplit("/", 1)[0] + "/postgres",
        "--json",
    )
    assert verified.returncode == 0, verified.stderr
    verdict = json.loads(s3.get_object(Bucket=bucket, Key=keys.verified)["Body"].read())
    assert verdict["verdict"] == "passed" and verdict["sha256_ok"] is True
    assert {t["table"] for t in verdict["tables"]} == {
        f"{t['schema']}.{t['table']}" for t in manifest["tables"]
    }

    listing = cli("list", "--bucket", bucket, "--prefix", "team/a", "--name", "rich", "--json")
    assert json.loads(listing.stdout)[0]["verified"] == "passed"


def test_backup_reads_the_standard_pg_environment(cli, make_database, pg, bucket):
    dbname = make_database("CREATE TABLE t AS SELECT 1 AS x").rsplit("/", 1)[1]
    env = {
        "PGHOST": "127.0.0.1",
        "PGPORT": str(pg.port),
        "PGUSER": "pgad_backup",
        "PGPASSWORD": BACKUP_PASSWORD,
        "PGDATABASE": dbname,
    }
    result = cli("backup", "--bucket", bucket, "--json", env=env)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert manifest["name"] == dbname and manifest["tables"][0]["rows"] == 1
    assert BACKUP_PASSWORD not in result.stdout + result.stderr
