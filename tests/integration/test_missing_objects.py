"""A backup whose objects were deleted after it completed (a lifecycle rule, a person) is
named as such: ObjectMissingError (53) before a restore, verify or export touches
anything, MISSING-OBJECTS in ``list``, skipped with a warning by ``status``."""

from __future__ import annotations

import json

import pytest

from pgautodumper.checked import CheckedObject
from pgautodumper.errors import ObjectMissingError
from pgautodumper.manifest import StoredObject
from tests.conftest import BACKUP_PASSWORD
from tests.integration.format2 import backup

pytestmark = pytest.mark.background

SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items SELECT g, repeat(md5(g::text), 30) FROM generate_series(1, 3000) g;
CREATE TABLE small (id int);
"""

# Which object goes: (backup format, the suffix of its key).
GONE = {
    "a part": ("2", ".part-00002.copy.zst"),
    "the data archive": ("2", ".data.dump.zst"),
    "the roles object": ("2", ".roles.json.zst"),
}


def _objects(manifest: dict) -> list[str]:
    if manifest["format_version"] == 1:
        return [manifest["dump_key"]]
    extra = [manifest["roles"]] if manifest.get("roles") else []
    stored = [manifest["schema_archive"], manifest["data_archive"], *manifest["parts"], *extra]
    return [o["key"] for o in stored]


def _relations(pg, url: str) -> int:
    return int(pg.psql(
        "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
        dbname=url.rsplit("/", 1)[1],
    ))  # fmt: skip


@pytest.mark.parametrize("gone", list(GONE))
def test_a_backup_missing_an_object_is_refused_before_anything_is_restored(
    cli, make_database, pg, bucket, s3, gone
):
    backup_format, suffix = GONE[gone]
    manifest = backup(make_database(SQL), bucket, "items", "--format", backup_format)
    deleted = next(k for k in _objects(manifest) if k.endswith(suffix))
    s3.delete_object(Bucket=bucket, Key=deleted)
    target = make_database()

    restored = cli("restore", "--bucket", bucket, "--latest", "--name", "items",
                   "--database-url", target)  # fmt: skip
    verified = cli("verify", "--bucket", bucket, "--latest", "--name", "items",
                   "--scratch-url", pg.url("pgad_backup", BACKUP_PASSWORD))  # fmt: skip
    exported = cli("export", "--bucket", bucket, "--latest", "--name", "items")
    listed = cli("list", "--bucket", bucket, "--name", "items", "--json")

    for result in (restored, verified, exported):
        assert result.returncode == ObjectMissingError.exit_code, result.stderr
        assert deleted in result.stderr and "deleted after the backup completed" in result.stderr
        assert "Traceback" not in result.stderr
    assert "nothing was restored" in restored.stderr and _relations(pg, target) == 0
    assert exported.stdout == ""
    [row] = json.loads(listed.stdout)
    assert row["missing_objects"] == [deleted] and deleted in row["problem"]
    table = cli("list", "--bucket", bucket, "--name", "items")
    assert "MISSING-OBJECTS" in table.stdout


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_backup_whose_main_object_is_gone_is_listed_and_latest_takes_the_one_before(
    cli, make_database, pg, bucket, s3, backup_format
):
    source = make_database(SQL)
    older = backup(source, bucket, "items", "--format", backup_format)
    newer = backup(source, bucket, "items", "--format", backup_format)
    s3.delete_object(Bucket=bucket, Key=newer["dump_key"])
    target = make_database()

    by_key = cli("restore", "--bucket", bucket, "--key", newer["manifest_key"],
                 "--database-url", target)  # fmt: skip
    latest = cli("restore", "--bucket", bucket, "--latest", "--name", "items",
                 "--database-url", target, "--json")  # fmt: skip
    listed = json.loads(cli("list", "--bucket", bucket, "--name", "items", "--json").stdout)
    status = cli("status", "--bucket", bucket, "--json")

    assert by_key.returncode == ObjectMissingError.exit_code, by_key.stderr
    assert newer["dump_key"] in by_key.stderr
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["dump_key"] == older["dump_key"]
    assert "is gone: deleted after the backup completed; taking the one before" in latest.stderr
    assert [row["missing_objects"] for row in listed] == [[newer["dump_key"]], []]
    [row] = [r for r in json.loads(status.stdout) if r["name"] == "items"]
    assert row["last_backup"]["key"] == older["manifest_key"]
    assert newer["dump_key"] in status.stderr


def test_an_object_deleted_while_the_restore_runs_is_named_when_read(bucket):
    """Past the up-front listing, the read itself names the object as missing."""
    gone = StoredObject(key="items/x.part-00001.copy.zst", sha256="0" * 64, stored_bytes=1,
                        raw_bytes=1)  # fmt: skip
    reader = CheckedObject(bucket, gone, "part 1 of table public.items")

    with pytest.raises(ObjectMissingError, match=r"part 1 of table public\.items .* is gone"):
        reader.read()
