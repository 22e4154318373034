"""Format-1 backups (one pg_dump stream) stay readable everywhere: restore, verify,
and export | psql with nothing but psql."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import BACKUP_PASSWORD, run_cli
from tests.integration.format2 import (
    DATA,
    Databases,
    backup,
    contents,
    differences,
)

RICH_SQL = (DATA / "rich.sql").read_text()


@pytest.fixture(scope="module")
def source(dbs: Databases) -> str:
    return dbs.create(RICH_SQL)


@pytest.fixture(scope="module")
def manifest(source: str, bucket_name: str) -> dict:
    manifest = backup(source, bucket_name, "rich", "--format", "1")
    assert manifest["format_version"] == 1
    return manifest


def test_export_of_a_format_1_backup_loads_with_psql_alone(
    dbs, source, bucket_name, manifest, tmp_path
):
    script = tmp_path / "export.sql"
    with script.open("wb") as out:
        exported = subprocess.run(
            [sys.executable, "-m", "pgautodumper", "export", "--bucket", bucket_name, "--latest",
             "--name", "rich"],
            stdout=out, stderr=subprocess.PIPE, text=True, check=False, timeout=300,
        )  # fmt: skip
    assert exported.returncode == 0, exported.stderr
    target = dbs.create()
    loaded = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(script),
         target],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    assert differences(contents(source), contents(target)) == {}


def test_restore_and_verify_of_a_format_1_backup(dbs, source, bucket_name, manifest, pg, s3):
    target = dbs.create()
    restored = run_cli("restore", "--bucket", bucket_name, "--key", manifest["dump_key"],
                       "--database-url", target, "--analyze", "--json")  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert json.loads(restored.stdout)["format_version"] == 1
    assert differences(contents(source), contents(target)) == {}

    verified = run_cli(
        "verify", "--bucket", bucket_name, "--key", manifest["dump_key"], "--scratch-url",
        pg.url("pgad_backup", BACKUP_PASSWORD, "postgres"),
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    key = manifest["dump_key"].replace(".dump.zst", ".verified.json")
    verdict = json.loads(s3.get_object(Bucket=bucket_name, Key=key)["Body"].read())
    assert verdict["verdict"] == "passed" and verdict["dump_key"] == manifest["dump_key"]
    assert verdict["restore_seconds"] > 0
