"""A format-2 restore or export refuses bytes that differ from the manifest, names the
object (table, part, key), and never commits what came from them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from tests.conftest import BACKUP_PASSWORD, run_cli
from tests.integration.format2 import (
    Databases,
    backup,
    schema_key,
)

SQL = """
CREATE TABLE events (id int PRIMARY KEY, body text);
INSERT INTO events SELECT g, repeat(md5(g::text), 2) FROM generate_series(1, 60000) g;
CREATE TABLE audit (id int PRIMARY KEY, what text);
INSERT INTO audit SELECT g, md5(g::text) || repeat('a', 40) FROM generate_series(1, 30000) g;
CREATE TABLE small (id int PRIMARY KEY);
INSERT INTO small SELECT generate_series(1, 100);
"""


@pytest.fixture(scope="module")
def source(dbs: Databases) -> str:
    return dbs.create(SQL)


@pytest.fixture(scope="module")
def manifest(source: str, bucket_name: str) -> dict:
    return backup(source, bucket_name, "events")


def _flip_middle_byte(data: bytes) -> bytes:
    damaged = bytearray(data)
    damaged[len(damaged) // 2] ^= 0x01
    return bytes(damaged)


def _truncate(data: bytes) -> bytes:
    return data[: len(data) - 100]


@contextmanager
def damaged(s3, bucket: str, key: str, change: Callable[[bytes], bytes]) -> Iterator[None]:
    """The object changed in the store for the duration (then put back as it was)."""
    original = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=bucket, Key=key, Body=change(original))
    try:
        yield
    finally:
        s3.put_object(Bucket=bucket, Key=key, Body=original)


def test_a_corrupt_part_fails_the_restore_and_none_of_its_rows_are_committed(
    dbs, source, bucket_name, manifest, s3
):
    parts = [p for p in manifest["parts"] if p["table"] == "events"]
    assert len(parts) >= 3
    part = parts[1]
    target = dbs.create()

    with damaged(s3, bucket_name, part["key"], _flip_middle_byte):
        result = run_cli(
            "restore", "--bucket", bucket_name, "--key", schema_key(manifest), "--database-url",
            target, "--jobs", "2",
        )  # fmt: skip

    assert result.returncode == 50, result.stderr
    assert f"table public.events ({part['key']}) is corrupt" in result.stderr
    assert "checksum mismatch" in result.stderr and "Traceback" not in result.stderr
    assert BACKUP_PASSWORD not in result.stderr
    ids = _ids(source, part["predicate"])
    assert len(ids) == part["rows"] > 0
    with psycopg.connect(target) as conn:
        committed = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s)", [ids]).fetchone()
    assert committed == (0,)


@pytest.mark.parametrize("archive", ["schema_archive", "data_archive"])
def test_a_damaged_archive_is_called_corrupt(dbs, bucket_name, manifest, s3, archive):
    target = dbs.create()

    with damaged(s3, bucket_name, manifest[archive]["key"], _truncate):
        result = run_cli("restore", "--bucket", bucket_name, "--key", schema_key(manifest),
                         "--database-url", target)  # fmt: skip

    assert result.returncode == 50, result.stderr
    assert f"({manifest[archive]['key']}) is corrupt" in result.stderr
    assert "truncated or replaced" in result.stderr
    if archive == "schema_archive":  # checked before anything is restored
        with psycopg.connect(target) as conn:
            assert conn.execute("SELECT to_regclass('public.events')").fetchone() == (None,)


def test_a_corrupt_part_makes_the_export_unusable(dbs, source, bucket_name, manifest, s3, tmp_path):
    part = next(p for p in manifest["parts"] if p["table"] == "events")
    script = tmp_path / "export.sql"

    with damaged(s3, bucket_name, part["key"], _flip_middle_byte), script.open("wb") as out:
        exported = subprocess.run(
            [sys.executable, "-m", "pgautodumper", "export", "--bucket", bucket_name,
             "--key", schema_key(manifest)],
            stdout=out, stderr=subprocess.PIPE, text=True, check=False, timeout=300,
        )  # fmt: skip

    assert exported.returncode == 50, exported.stderr
    assert part["key"] in exported.stderr and "discard it" in exported.stderr
    assert b"PRIMARY KEY" not in script.read_bytes()  # post-data never written
    target = dbs.create()
    loaded = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(script), target],
        capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert loaded.returncode != 0
    assert "COPY events, line" in loaded.stderr  # the damaged part's COPY failed whole
    ids = _ids(source, part["predicate"])
    with psycopg.connect(target) as conn:
        committed = conn.execute("SELECT count(*) FROM events WHERE id = ANY(%s)", [ids]).fetchone()
    assert committed == (0,)


def _ids(url: str, predicate: str) -> list[int]:
    """The ids a part holds: its rows, read in the source with the part's ctid range."""
    with psycopg.connect(url) as conn:
        return [row[0] for row in conn.execute(f"SELECT id FROM events WHERE {predicate}")]
