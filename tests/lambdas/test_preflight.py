"""Preflight against the real PostgreSQL: facts, unreadable objects, classified failures, lock."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

import boto3
import pytest

from lambdas import preflight as preflight_lambda
from pgautodumper import layout, storage
from pgautodumper.contract import PreflightResult
from pgautodumper.errors import (
    BackupAlreadyRunningError,
    DatabaseNotFoundError,
    PgVersionMismatchError,
    PreflightAuthError,
    PreflightConnectionError,
    PreflightPermissionError,
)
from pgautodumper.preflight import choose_pg_dump_major
from pgautodumper.scratch import free_port
from tests.conftest import BACKUP_PASSWORD
from tests.lambdas.conftest import execution_context, execution_document, log_records

SCHEMA = """
CREATE TABLE public.visible (id int);
CREATE TABLE public.hidden_rows (id int, secret text);
CREATE SEQUENCE public.visible_seq;
CREATE SEQUENCE public.hidden_seq;
CREATE SCHEMA vault;
CREATE TABLE vault.keys (id int);
SELECT lo_create(424242);
SELECT lo_create(434343);
"""


def document(secret_arn: str, bucket: str, execution_arn: str, **over) -> dict:
    started = over.pop("start", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC))
    base = {
        "name": over.pop("name", "app"),
        "secret_arn": secret_arn,
        "bucket": bucket,
        "prefix": "backups",
        "sslmode": "disable",  # the throwaway server has no TLS; AWS default is require
        "execution": execution_context(execution_arn, started),
        "target": {
            "secret_arn": secret_arn,
            "secret_version_id": boto3.client("secretsmanager").get_secret_value(
                SecretId=secret_arn
            )["VersionId"],
            "host": "127.0.0.1",
            "port": 5432,
            "dbname": "ignored: the secret version is read again",
            "user": "x",
        },
    }
    return execution_document(**{**base, **over})


@pytest.fixture
def app_db(make_database):
    url = make_database(SCHEMA + "INSERT INTO public.visible SELECT generate_series(1, 1000);")
    return url.rsplit("/", 1)[-1]


def test_healthy_database_reports_facts_and_takes_the_lock(
    leaks, app_db, db_secret, bucket, s3, execution
):
    arn = execution()
    event = document(db_secret(app_db), bucket, arn)
    output = leaks.invoke(preflight_lambda.handler, event)

    result = PreflightResult.model_validate(output)
    assert result.server_version_num // 10000 == 15
    assert result.server_version.startswith("15")
    assert result.database_size_bytes > 1_000_000
    assert result.is_replica is False and result.warnings == []
    assert result.lock_key == "backups/app/.lock"
    # The tasks' one input, decided here: keys computed once, the secret version pinned.
    task = result.task
    keys = layout.backup_keys("backups", "app", datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), arn)
    assert task.keys == keys and task.run_id == keys.run_id
    assert task.keys.dump.startswith("backups/app/2024/05/06/20240506T070809Z-")
    assert (task.bucket, task.sslmode) == (bucket, "disable")
    target = event["target"]
    assert (task.secret_arn, task.secret_version_id) == (
        target["secret_arn"],
        target["secret_version_id"],
    )
    assert task.pg_dump_major == 15
    assert task.part_size_bytes == storage.DEFAULT_PART_SIZE
    assert (task.jobs, task.lock_wait_timeout_seconds) == (1, 300)  # 1024 CPU units: 1 vCPU
    assert result.sizing.model_dump() == {"cpu": 1024, "memory": 2048, "timeout_seconds": 21600}
    lock = json.loads(s3.get_object(Bucket=bucket, Key="backups/app/.lock")["Body"].read())
    assert lock["execution_arn"] == arn

    raw = leaks.read()
    lines = log_records(raw)
    taken = [r for r in lines if "taken by" in r.get("message", "")]
    assert taken and taken[0]["function_name"] == "pgautodumper-test"
    assert taken[0]["level"] == "INFO"


def test_role_without_privileges_names_every_unreadable_object(
    leaks, pg, app_db, db_secret, bucket, s3, execution
):
    role = f"limited_{secrets.token_hex(3)}"
    password = leaks.forbid(f"lim-{secrets.token_hex(10)}")
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    pg.psql(
        f"GRANT SELECT ON public.visible TO {role}; GRANT SELECT ON public.visible_seq TO {role};"
        f"GRANT SELECT ON LARGE OBJECT 434343 TO {role};",
        dbname=app_db,
    )
    event = document(db_secret(app_db, user=role, password=password), bucket, execution())

    with pytest.raises(PreflightPermissionError) as info:
        leaks.invoke(preflight_lambda.handler, event)

    message = str(info.value)
    for name in (
        "schema vault", "table public.hidden_rows", "sequence public.hidden_seq",
        "table vault.keys", "large object 424242",
    ):  # fmt: skip
        assert name in message
    for readable in ("public.visible,", "public.visible_seq", "434343"):
        assert readable not in message
    assert "5 object(s)" in message and role in message
    assert type(info.value).__name__ == "PreflightPermissionError"
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket), "no lock on a failed preflight"


def test_granting_the_missing_privileges_makes_preflight_pass(
    leaks, pg, app_db, db_secret, bucket, execution
):
    role = f"reader_{secrets.token_hex(3)}"
    password = leaks.forbid(f"rd-{secrets.token_hex(10)}")
    pg.psql(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT pg_read_all_data TO {role}")
    # pg_read_all_data covers tables, sequences and schemas, not large objects (before 17).
    pg.psql(
        f"GRANT SELECT ON LARGE OBJECT 424242 TO {role}; "
        f"GRANT SELECT ON LARGE OBJECT 434343 TO {role}",
        dbname=app_db,
    )
    event = document(db_secret(app_db, user=role, password=password), bucket, execution())
    assert PreflightResult.model_validate(leaks.invoke(preflight_lambda.handler, event))


def test_wrong_password_is_an_auth_error(leaks, app_db, db_secret, bucket, execution):
    wrong = leaks.forbid(f"wrong-{secrets.token_hex(8)}")
    event = document(db_secret(app_db, password=wrong), bucket, execution())
    with pytest.raises(PreflightAuthError, match="authentication failed") as info:
        leaks.invoke(preflight_lambda.handler, event)
    assert info.value.exit_code == 10


def test_closed_port_is_a_retryable_connection_error(leaks, db_secret, bucket, execution):
    event = document(db_secret("postgres", port=free_port()), bucket, execution())
    with pytest.raises(PreflightConnectionError, match=r"cannot reach 127\.0\.0\.1") as info:
        leaks.invoke(preflight_lambda.handler, event)
    assert info.value.exit_code == 11


def test_unresolvable_host_is_a_connection_error(leaks, make_secret, bucket, execution):
    arn = make_secret(
        {"host": "db.invalid", "username": "u", "password": BACKUP_PASSWORD, "dbname": "x"}
    )
    with pytest.raises(PreflightConnectionError, match=r"db\.invalid"):
        leaks.invoke(preflight_lambda.handler, document(arn, bucket, execution()))


def test_nonexistent_database_is_database_not_found(leaks, db_secret, bucket, execution):
    event = document(db_secret(f"missing_{secrets.token_hex(3)}"), bucket, execution())
    with pytest.raises(DatabaseNotFoundError, match="does not exist"):
        leaks.invoke(preflight_lambda.handler, event)


def test_a_running_backup_of_the_same_name_blocks_preflight(
    leaks, app_db, db_secret, bucket, execution
):
    secret = db_secret(app_db)
    first, second = execution(), execution()
    leaks.invoke(preflight_lambda.handler, document(secret, bucket, first))

    with pytest.raises(BackupAlreadyRunningError, match="already running") as info:
        leaks.invoke(preflight_lambda.handler, document(secret, bucket, second))
    assert first in str(info.value)

    boto3.client("stepfunctions").stop_execution(executionArn=first)
    result = leaks.invoke(preflight_lambda.handler, document(secret, bucket, second))
    assert result["lock_key"] == "backups/app/.lock"


def test_missing_target_names_the_wiring_mistake(leaks, bucket):
    from pgautodumper.errors import UsageError

    event = {"request": {"name": "app", "secret_arn": "arn:x", "bucket": bucket}}
    with pytest.raises(UsageError, match="no 'target'"):
        leaks.invoke(preflight_lambda.handler, event)


def test_an_invalid_request_is_named_at_the_boundary(leaks, bucket):
    from pgautodumper.errors import RequestInvalidError

    event = {"request": {"name": "app", "secret_arn": "arn:x", "bucket": bucket,
                         "task": {"cpu": 1024, "memory": 512}}}  # fmt: skip
    with pytest.raises(RequestInvalidError, match=r"task\.memory 512 MiB is not valid"):
        leaks.invoke(preflight_lambda.handler, event)


def test_pg_dump_major_is_the_oldest_that_can_dump_the_server():
    assert choose_pg_dump_major(150004, (13, 14, 15, 16, 17)) == 15
    assert choose_pg_dump_major(120010, (13, 14, 15, 16, 17)) == 13
    with pytest.raises(PgVersionMismatchError, match="PostgreSQL 18"):
        choose_pg_dump_major(180000, (13, 14, 15, 16, 17))


def test_missing_bucket_fails_preflight_when_taking_the_lock(leaks, app_db, db_secret, execution):
    from pgautodumper.errors import BucketNotFoundError

    event = document(db_secret(app_db), f"pgad-missing-{secrets.token_hex(4)}", execution())
    with pytest.raises(BucketNotFoundError, match="does not exist"):
        leaks.invoke(preflight_lambda.handler, event)


def test_a_long_transaction_holding_locks_is_a_warning(
    leaks, pg, app_db, db_secret, bucket, execution, monkeypatch
):
    import psycopg

    from pgautodumper import preflight

    # Any age counts here: the check compares the transaction's start time.
    monkeypatch.setattr(preflight, "LONG_TRANSACTION_SECONDS", 0)
    event = document(db_secret(app_db), bucket, execution())
    url = pg.url("pgad_backup", BACKUP_PASSWORD, app_db)
    with psycopg.connect(url, application_name="slow-migration") as migration:
        migration.execute("LOCK TABLE public.visible IN ACCESS EXCLUSIVE MODE")
        result = PreflightResult.model_validate(leaks.invoke(preflight_lambda.handler, event))
    [warning] = result.warnings
    assert "slow-migration" in warning and "visible" in warning
