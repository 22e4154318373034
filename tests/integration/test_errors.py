"""Every expected failure: one line on stderr, its own exit code, no traceback."""

from __future__ import annotations

import json
import secrets

import boto3
import pytest

from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE, FROZEN_SCHEMA_SQL


def assert_one_line_error(result, code: int, *fragments: str) -> None:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("pgautodumper: error: ")]
    assert result.returncode == code, result.stderr
    assert len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    assert BACKUP_PASSWORD not in result.stderr + result.stdout


@pytest.fixture
def small_db(make_database) -> str:
    return make_database("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 100) g")


@pytest.fixture
def backed_up(cli, small_db, bucket, s3) -> dict:
    result = cli(
        "backup", "--database-url", small_db, "--bucket", bucket, "--name", "small", "--json"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_wrong_password(cli, pg, bucket):
    url = pg.url(BACKUP_ROLE, "not-the-password", "postgres")
    assert_one_line_error(
        cli("backup", "--database-url", url, "--bucket", bucket),
        10,
        "authentication failed",
        "127.0.0.1",
    )


def test_host_unreachable(cli, bucket):
    url = f"postgresql://{BACKUP_ROLE}:{BACKUP_PASSWORD}@127.0.0.1:1/postgres"
    assert_one_line_error(
        cli("backup", "--database-url", url, "--bucket", bucket),
        11,
        "cannot reach 127.0.0.1:1/postgres",
        "check host, port",
    )


@pytest.mark.parametrize(
    ("refusal", "code", "words"),
    [
        # CONNECT revoked from PUBLIC: a missing privilege, not an unreachable host.
        ('REVOKE CONNECT ON DATABASE "{db}" FROM PUBLIC', 13, "GRANT CONNECT ON DATABASE"),
        ("ALTER ROLE {role} NOLOGIN", 10, "ALTER ROLE {role} LOGIN"),
        ('ALTER DATABASE "{db}" ALLOW_CONNECTIONS false', 11, "ALLOW_CONNECTIONS true"),
    ],
)
def test_a_server_refusing_the_session_says_why(cli, pg, small_db, bucket, refusal, code, words):
    """What a server refuses at connect is named from its words, not called unreachable
    (which would send people to security groups and have the workflow retry)."""
    role, db = f"pgad_refused_{secrets.token_hex(3)}", small_db.rsplit("/", 1)[1]
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{BACKUP_PASSWORD}'")
    pg.psql(refusal.format(db=db, role=role))
    try:
        assert_one_line_error(
            cli("backup", "--database-url", pg.url(role, BACKUP_PASSWORD, db), "--bucket", bucket),
            code,
            words.format(role=role),
        )
    finally:
        pg.psql(f'ALTER DATABASE "{db}" ALLOW_CONNECTIONS true')
        pg.psql(f"DROP ROLE {role}")


def test_unknown_database(cli, pg, bucket):
    url = pg.url(BACKUP_ROLE, BACKUP_PASSWORD, "no_such_db")
    assert_one_line_error(
        cli("backup", "--database-url", url, "--bucket", bucket),
        12,
        "database not found",
        "no_such_db",
    )


def test_bucket_missing(cli, small_db):
    result = cli("backup", "--database-url", small_db, "--bucket", "no-such-bucket-here")
    assert_one_line_error(result, 30, "bucket no-such-bucket-here does not exist")


def test_access_denied(cli, small_db, bucket, s3):
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    result = cli("backup", "--database-url", small_db, "--bucket", bucket)
    assert_one_line_error(result, 31, "access denied", bucket)


def test_secret_missing(cli, bucket):
    result = cli(
        "backup",
        "--secret-id",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope",
        "--bucket",
        bucket,
    )
    assert_one_line_error(result, 40, "secret", "not found")


def test_secret_malformed_names_keys_never_values(cli, bucket):
    sm = boto3.client("secretsmanager")
    secret = sm.create_secret(
        Name=f"bad-{bucket}",
        SecretString=json.dumps({"username": "x", "password": BACKUP_PASSWORD}),
    )
    result = cli("backup", "--secret-id", secret["ARN"], "--bucket", bucket)
    assert_one_line_error(result, 42, "lacks required key(s): host")


def test_backup_from_a_secret(cli, pg, small_db, bucket):
    sm = boto3.client("secretsmanager")
    dbname = small_db.rsplit("/", 1)[1]
    secret = sm.create_secret(
        Name=f"good-{bucket}",
        SecretString=json.dumps(
            {
                "host": "127.0.0.1",
                "port": pg.port,
                "username": BACKUP_ROLE,
                "password": BACKUP_PASSWORD,
                "dbname": dbname,
                "engine": "postgres",
            }
        ),
    )
    result = cli("backup", "--secret-id", secret["ARN"], "--bucket", bucket, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["name"] == dbname
    assert BACKUP_PASSWORD not in result.stdout + result.stderr


def test_no_pg_dump_for_this_server(cli, small_db, bucket, s3):
    result = cli("backup", "--database-url", small_db, "--bucket", bucket, "--pg-dump-major", "99")
    assert_one_line_error(result, 20, "no pg_dump can handle PostgreSQL", "installed:")
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_restore_into_non_empty_target(cli, small_db, bucket, backed_up):
    result = cli(
        "restore", "--bucket", bucket, "--key", backed_up["dump_key"], "--database-url", small_db
    )
    assert_one_line_error(result, 14, "is not empty", "--clean")


def test_restore_into_a_database_that_does_not_exist_says_create_it(cli, pg, bucket, backed_up):
    url = pg.url(BACKUP_ROLE, BACKUP_PASSWORD, "not_created_yet")
    result = cli(
        "restore", "--bucket", bucket, "--key", backed_up["dump_key"], "--database-url", url
    )
    assert_one_line_error(
        result, 12, "not_created_yet", "createdb --template=template0 not_created_yet"
    )


def test_restore_with_clean_replaces_objects(cli, small_db, bucket, backed_up, pg):
    dbname = small_db.rsplit("/", 1)[1]
    pg.psql("DELETE FROM t WHERE id > 10", dbname=dbname)
    result = cli(
        "restore",
        "--bucket",
        bucket,
        "--key",
        backed_up["dump_key"],
        "--database-url",
        small_db,
        "--clean",
    )
    assert result.returncode == 0, result.stderr
    assert pg.psql("SELECT count(*) FROM t", dbname=dbname).strip() == "100"


def test_unknown_manifest_format_is_refused(cli, make_database, bucket, s3, backed_up):
    manifest = dict(backed_up, format_version=99)
    s3.put_object(Bucket=bucket, Key=backed_up["manifest_key"], Body=json.dumps(manifest))
    result = cli(
        "restore",
        "--bucket",
        bucket,
        "--key",
        backed_up["dump_key"],
        "--database-url",
        make_database(),
    )
    assert_one_line_error(
        result, 51, "format_version 99", "use the pgautodumper release that wrote it"
    )


def test_missing_backup(cli, make_database, bucket):
    result = cli(
        "restore",
        "--bucket",
        bucket,
        "--latest",
        "--name",
        "nothing",
        "--database-url",
        make_database(),
    )
    assert_one_line_error(result, 32, "no complete backup of 'nothing'")


def test_usage_errors(cli, bucket):
    assert_one_line_error(
        cli("restore", "--bucket", bucket, "--database-url", "postgresql://x/y"),
        2,
        "give --key KEY, or --latest --name NAME",
    )
    result = cli(
        "backup", "--bucket", bucket, "--database-url", "postgresql://h/d", "--secret-id", "s"
    )
    assert_one_line_error(result, 2, "not both")
    result = cli("backup", "--bucket", bucket, "--database-url", "postgresql://h/d?bogus=1")
    assert_one_line_error(result, 2, "invalid database URL", "bogus")


def test_debug_shows_the_traceback(cli, bucket):
    url = f"postgresql://{BACKUP_ROLE}:{BACKUP_PASSWORD}@127.0.0.1:1/postgres"
    result = cli("--debug", "backup", "--database-url", url, "--bucket", bucket)
    assert result.returncode == 11
    assert "Traceback" in result.stderr
    assert BACKUP_PASSWORD not in result.stderr


def test_pg_restore_failure_is_reported_with_its_stderr(cli, pg, bucket, backed_up):
    """A failure no check foresees and no cause names: the target's own event trigger
    refuses DDL, as a change-freeze guard would."""
    pg.psql("DROP ROLE IF EXISTS restricted; CREATE ROLE restricted LOGIN PASSWORD 'restricted-pw'")
    pg.psql('CREATE DATABASE "restricted_target" OWNER restricted TEMPLATE template0')
    pg.psql(FROZEN_SCHEMA_SQL, dbname="restricted_target")
    url = pg.url("restricted", "restricted-pw", "restricted_target")
    result = cli(
        "restore", "--bucket", bucket, "--key", backed_up["dump_key"], "--database-url", url,
        "--no-owner",  # else the owners are refused first (OwnershipError, tested elsewhere)
    )  # fmt: skip
    assert_one_line_error(
        result,
        22,
        "pg_restore exited with code 1",
        "schema changes are frozen",
        "treat the target database as incomplete",
    )


def test_list_hides_incomplete_leftovers_unless_asked(cli, bucket, s3, backed_up):
    leftover = backed_up["dump_key"].replace(backed_up["run_id"], "crashed-run")
    s3.put_object(Bucket=bucket, Key=leftover, Body=b"partial")

    complete = json.loads(cli("list", "--bucket", bucket, "--name", "small", "--json").stdout)
    assert [row["key"] for row in complete] == [backed_up["dump_key"]]
    everything = cli("list", "--bucket", bucket, "--name", "small", "--all")
    assert everything.returncode == 0
    [flagged] = [line for line in everything.stdout.splitlines() if "crashed-run" in line]
    assert "INCOMPLETE" in flagged
