"""Restore and verify refuse bytes that differ from what the manifest recorded."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BACKUP_PASSWORD

SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items SELECT g, repeat(md5(g::text), 20) FROM generate_series(1, 5000) g;
"""


@pytest.fixture
def backup(cli, make_database, bucket) -> dict:
    result = cli(
        "backup",
        "--database-url",
        make_database(SQL),
        "--bucket",
        bucket,
        "--name",
        "items",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _tamper(s3, bucket: str, key: str, change) -> None:
    data = bytearray(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    s3.put_object(Bucket=bucket, Key=key, Body=bytes(change(data)))


def _flip_middle(data: bytearray) -> bytearray:
    data[len(data) // 2] ^= 0x01
    return data


def _truncate(data: bytearray) -> bytearray:
    return data[: len(data) - 100]


@pytest.mark.parametrize("change", [_flip_middle, _truncate], ids=["flipped-byte", "truncated"])
def test_restore_refuses_tampered_bytes(cli, make_database, pg, bucket, s3, backup, change):
    _tamper(s3, bucket, backup["dump_key"], change)
    target = make_database()
    result = cli(
        "restore", "--bucket", bucket, "--key", backup["dump_key"], "--database-url", target
    )

    assert result.returncode == 50, result.stderr
    assert "checksum" in result.stderr
    assert "treat the target database as incomplete" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("change", [_flip_middle, _truncate], ids=["flipped-byte", "truncated"])
def test_verify_refuses_tampered_bytes(cli, pg, bucket, s3, backup, change):
    _tamper(s3, bucket, backup["dump_key"], change)
    result = cli(
        "verify",
        "--bucket",
        bucket,
        "--key",
        backup["dump_key"],
        "--scratch-url",
        pg.url("pgad_backup", BACKUP_PASSWORD, "postgres"),
    )

    assert result.returncode == 50, result.stderr
    assert "checksum" in result.stderr
    verified_key = backup["dump_key"].replace(".dump.zst", ".verified.json")
    verdict = json.loads(s3.get_object(Bucket=bucket, Key=verified_key)["Body"].read())
    assert verdict["verdict"] == "failed" and verdict["sha256_ok"] is False
    leftovers = pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'pgad_verify_%'")
    assert leftovers.strip() == ""


def test_verify_reports_row_count_differences(cli, pg, bucket, s3, backup):
    manifest = dict(backup)
    manifest["tables"] = [dict(t, rows=t["rows"] + 1) for t in manifest["tables"]]
    s3.put_object(Bucket=bucket, Key=backup["manifest_key"], Body=json.dumps(manifest))
    result = cli(
        "verify",
        "--bucket",
        bucket,
        "--key",
        backup["dump_key"],
        "--scratch-url",
        pg.url("pgad_backup", BACKUP_PASSWORD, "postgres"),
    )

    assert result.returncode == 52, result.stderr
    assert "public.items: manifest 5001 rows, restored 5000" in result.stderr
    listing = cli("list", "--bucket", bucket, "--name", "items", "--json")
    assert json.loads(listing.stdout)[0]["verified"] == "failed"
