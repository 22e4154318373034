"""A download that breaks off half-way resumes where it stopped, and the restore is whole.

botocore retries requests, not bodies: without resuming, one reset connection
in a restore of many GiB starts it over, or fails it. The proxy here closes
the connection half-way through the first read of every object (the schema
and data archives, each part, the manifest, the roles).
"""

from __future__ import annotations

import secrets

import boto3
import pytest

from pgautodumper import aws, storage
from pgautodumper.errors import StorageUnavailableError
from tests.faults import faulty_proxy, first_reads_of_each_key
from tests.integration.format2 import backup, contents, differences

SCHEMA = """
CREATE TABLE events AS
  SELECT g AS id, md5(g::text) AS tag, repeat('e', 80) AS pad FROM generate_series(1, 40000) g;
CREATE INDEX ON events (tag);
CREATE TABLE small (id int PRIMARY KEY, v text);
INSERT INTO small VALUES (1, 'one'), (2, 'two');
"""


@pytest.mark.parametrize("format_", ["1", "2"])
def test_a_restore_whose_every_read_breaks_off_once_is_whole(
    cli, dbs, bucket_name, moto_server, format_
):
    source = dbs.create(SCHEMA)
    name = f"resume{format_}"
    backup(source, bucket_name, name, "--format", format_)
    target = dbs.create()

    with faulty_proxy(moto_server, cut=first_reads_of_each_key()) as proxy:
        result = cli(
            "restore", "--bucket", bucket_name, "--latest", "--name", name,
            "--database-url", target, env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert "broke off after" in result.stderr and "resuming there" in result.stderr
    assert differences(contents(source), contents(target)) == {}


def test_a_read_that_keeps_breaking_off_is_a_named_error(moto_server, monkeypatch):
    bucket, key = f"pgad-test-{secrets.token_hex(6)}", "app/object.bin"
    boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=secrets.token_bytes(4096))
    monkeypatch.setattr(storage, "RESUME_BACKOFF_SECONDS", 0.0)

    with faulty_proxy(moto_server, cut=lambda method, _: method == "GET") as proxy:
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
        aws.reset()
        try:
            with pytest.raises(StorageUnavailableError) as info:
                storage.get(bucket, key)
        finally:
            monkeypatch.undo()
            aws.reset()

    assert key in str(info.value)


def test_s3_failing_mid_restore_is_named_and_says_the_target_is_incomplete(
    cli, dbs, bucket_name, moto_server
):
    """Past botocore's retries, a part that S3 will not serve fails the restore by name
    (StorageUnavailableError), and the loaded rest is called incomplete."""
    source = dbs.create(SCHEMA)
    backup(source, bucket_name, "outage", "--format", "2")
    target = dbs.create()

    def parts(method: str, path: str) -> bool:
        return method == "GET" and ".part-" in path

    with faulty_proxy(moto_server, rule=parts) as proxy:
        result = cli(
            "restore", "--bucket", bucket_name, "--latest", "--name", "outage",
            "--database-url", target, env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip

    assert result.returncode == StorageUnavailableError.exit_code, result.stderr
    assert ".part-" in result.stderr and "InternalError" in result.stderr
    assert "restore again into an empty database, or with --clean" in result.stderr
    assert "Traceback" not in result.stderr
