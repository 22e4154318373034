"""No partial backup is ever visible, whatever fails mid-stream."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pgautodumper import storage
from pgautodumper.errors import BackupExistsError
from tests.conftest import run_cli, start_cli
from tests.faults import FirstUploadParts, fail_upload_parts_after, faulty_proxy

PART = 5 * 1024 * 1024
# About 40 MB of hex text: several 5 MiB parts after zstd.
BIG_SQL = """
CREATE TABLE blobs (id int PRIMARY KEY, payload text);
INSERT INTO blobs SELECT g, (SELECT string_agg(md5(random()::text || g || i), '')
                               FROM generate_series(1, 64) i)
  FROM generate_series(1, 20000) g;
"""


@pytest.fixture(scope="module")
def big_database(make_database_module) -> str:
    return make_database_module(BIG_SQL)


@pytest.fixture(scope="module")
def make_database_module(pg):
    from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE

    def make(sql: str) -> str:
        pg.psql('CREATE DATABASE "failures_big" TEMPLATE template0')
        pg.psql(sql, dbname="failures_big")
        return pg.url(BACKUP_ROLE, BACKUP_PASSWORD, "failures_big")

    return make


def assert_nothing_stored(s3, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _children(pid: int, name: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            comm = stat.read_text().split("(", 1)[1].rsplit(")", 1)[0]
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid and comm == name:
            found.append(int(stat.parent.name))
    return found


def _start_backup(database: str, bucket: str, **env: str) -> subprocess.Popen[str]:
    return start_cli(
        "backup", "--database-url", database, "--bucket", bucket, "--name", "big",
        "--part-size", str(PART), env=env,
    )  # fmt: skip


def _wait_mid_stream(s3, bucket: str, process: subprocess.Popen[str]) -> int:
    """Until the upload exists and pg_dump runs; returns pg_dump's pid."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        dumps = _children(process.pid, "pg_dump")
        if dumps and s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            return dumps[0]
        time.sleep(0.02)
    pytest.fail("the backup never started streaming")


@pytest.fixture
def slow_link(moto_server) -> Iterator[str]:
    """A throttled link to S3, so the test can act while the stream is running."""
    with faulty_proxy(moto_server, part_delay=1.0) as proxy:
        yield proxy


def test_pg_dump_killed_mid_stream_leaves_nothing(big_database, bucket, s3, slow_link):
    process = _start_backup(big_database, bucket, AWS_ENDPOINT_URL=slow_link)
    os.kill(_wait_mid_stream(s3, bucket, process), signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 21, stderr
    assert "pg_dump was killed by SIGKILL" in stderr
    assert "Traceback" not in stderr
    assert_nothing_stored(s3, bucket)


def test_sigterm_aborts_the_upload(big_database, bucket, s3, slow_link):
    process = _start_backup(big_database, bucket, AWS_ENDPOINT_URL=slow_link)
    _wait_mid_stream(s3, bucket, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    assert "stopped by SIGTERM" in stderr
    assert_nothing_stored(s3, bucket)


def test_s3_failing_mid_upload_aborts_and_stores_nothing(big_database, bucket, s3, moto_server):
    with faulty_proxy(moto_server, fail_upload_parts_after(1)) as proxy:
        process = _start_backup(big_database, bucket, AWS_ENDPOINT_URL=proxy, AWS_MAX_ATTEMPTS="2")
        _, stderr = process.communicate(timeout=120)

    assert process.returncode == 34, stderr
    assert "upload part of" in stderr and "InternalError" in stderr
    assert_nothing_stored(s3, bucket)


@pytest.mark.parametrize(
    ("backup_format", "refused"), [("2", ".roles."), ("2", ".manifest."), ("1", ".manifest.")]
)
def test_objects_made_visible_are_withdrawn_when_the_manifest_is_not_written(
    cli, make_database, bucket, s3, moto_server, backup_format, refused
):
    """Every stream completed, then S3 refused the roles object or the manifest: the
    completed objects are deleted again, so the task's rerun of the same keys starts
    clean (not BackupExistsError) and nothing is left for prune."""
    source = make_database("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    with faulty_proxy(moto_server, lambda method, path: method == "PUT" and refused in path) as p:
        link = {"AWS_ENDPOINT_URL": p, "AWS_MAX_ATTEMPTS": "2"}
        result = cli("backup", "--database-url", source, "--bucket", bucket, "--name", "w",
                     "--format", backup_format, env=link)  # fmt: skip
    assert result.returncode == 34, result.stderr
    assert "InternalError" in result.stderr and "Traceback" not in result.stderr
    assert_nothing_stored(s3, bucket)


def test_transient_s3_failures_mid_upload_are_retried_and_the_backup_completes(
    big_database, bucket, s3, moto_server
):
    """Throttling (503 SlowDown), then a connection closed with no answer: each is
    retried with backoff (botocore's standard mode), and nothing is lost."""
    throttle, reset = FirstUploadParts(2), FirstUploadParts(1)
    with (
        faulty_proxy(moto_server, throttle, error=(503, "SlowDown")) as throttled,
        faulty_proxy(throttled, drop=reset) as proxy,
    ):
        process = _start_backup(big_database, bucket, AWS_ENDPOINT_URL=proxy)
        _, stderr = process.communicate(timeout=300)

    assert process.returncode == 0, stderr
    assert (throttle.fired, reset.fired) == (2, 1), "the faults happened"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert any(k.endswith(".manifest.json") for k in keys), keys
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    restored = run_cli("verify", "--bucket", bucket, "--latest", "--name", "big",
                       "--scratch-local")  # fmt: skip
    assert restored.returncode == 0, restored.stderr


def test_a_second_run_cannot_overwrite_an_existing_backup(cli, make_database, bucket, s3):
    database = make_database("CREATE TABLE t AS SELECT 1 AS x")
    args = (
        "backup",
        "--database-url",
        database,
        "--bucket",
        bucket,
        "--name",
        "same",
        "--run-id",
        "exec-1",
        "--started-at",
        "2026-01-02T03:04:05Z",
        "--json",
    )
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    key = json.loads(first.stdout)["dump_key"]
    original = s3.get_object(Bucket=bucket, Key=key)["ETag"]

    second = cli(*args)
    assert second.returncode == 33, second.stderr
    assert "already exists and is never overwritten" in second.stderr
    assert s3.get_object(Bucket=bucket, Key=key)["ETag"] == original
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_complete_refuses_a_key_written_while_uploading(bucket, s3):
    """If-None-Match on CompleteMultipartUpload closes the race the pre-check leaves."""
    sink = storage.S3MultipartSink(bucket, "race/key.dump.zst")
    sink.write(b"ours")
    s3.put_object(Bucket=bucket, Key="race/key.dump.zst", Body=b"theirs")
    with pytest.raises(BackupExistsError):
        sink.complete()
    sink.abort()
    assert s3.get_object(Bucket=bucket, Key="race/key.dump.zst")["Body"].read() == b"theirs"


def test_parts_are_cut_at_exactly_the_part_size(bucket, s3):
    data = os.urandom(PART * 2 + PART // 2)
    sink = storage.S3MultipartSink(bucket, "exact/key.dump.zst", base_part_size=PART)
    for start in range(0, len(data), 777_777):  # chunks that straddle part boundaries
        sink.write(data[start : start + 777_777])
    assert sink.complete() == 3

    sizes = [
        s3.head_object(Bucket=bucket, Key="exact/key.dump.zst", PartNumber=n)["ContentLength"]
        for n in (1, 2, 3)
    ]
    assert sizes == [PART, PART, PART // 2]
    assert s3.get_object(Bucket=bucket, Key="exact/key.dump.zst")["Body"].read() == data
