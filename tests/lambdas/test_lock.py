"""The per-database lock: taken, contended, taken over, released only by its holder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from lambdas import release_lock
from pgautodumper import lock
from pgautodumper.contract import LockRelease
from pgautodumper.errors import BackupAlreadyRunningError
from tests.lambdas.conftest import execution_context, execution_document

KEY = "p/app/.lock"
HOUR = 3600


def holder(s3, bucket: str) -> str:
    return json.loads(s3.get_object(Bucket=bucket, Key=KEY)["Body"].read())["execution_arn"]


def test_taken_when_free(s3, bucket, execution):
    arn = execution()
    taken = lock.acquire(bucket, "p", "app", arn, max_run_seconds=HOUR)
    assert taken.execution_arn == arn
    assert holder(s3, bucket) == arn


def test_retaking_by_the_same_execution_is_idempotent(s3, bucket, execution):
    arn = execution()
    first = lock.acquire(bucket, "p", "app", arn, max_run_seconds=HOUR)
    again = lock.acquire(bucket, "p", "app", arn, max_run_seconds=HOUR)
    assert again.acquired_at == first.acquired_at


def test_contended_while_the_holder_runs(s3, bucket, execution):
    running, other = execution(), execution()
    lock.acquire(bucket, "p", "app", running, max_run_seconds=HOUR)
    with pytest.raises(BackupAlreadyRunningError) as info:
        lock.acquire(bucket, "p", "app", other, max_run_seconds=HOUR)
    assert running in str(info.value) and f"s3://{bucket}/{KEY}" in str(info.value)
    assert info.value.exit_code == 35
    assert holder(s3, bucket) == running


def test_other_names_do_not_contend(bucket, execution):
    lock.acquire(bucket, "p", "app", execution(), max_run_seconds=HOUR)
    lock.acquire(bucket, "p", "other", execution(), max_run_seconds=HOUR)
    lock.acquire(bucket, "q", "app", execution(), max_run_seconds=HOUR)


def test_taken_over_when_the_holder_stopped(s3, bucket, execution):
    dead, live = execution(), execution()
    lock.acquire(bucket, "p", "app", dead, max_run_seconds=HOUR)
    boto3.client("stepfunctions").stop_execution(executionArn=dead)
    lock.acquire(bucket, "p", "app", live, max_run_seconds=HOUR)
    assert holder(s3, bucket) == live


def test_taken_over_when_the_holder_does_not_exist(s3, bucket, execution):
    ghost = execution().rsplit(":", 1)[0] + ":no-such-execution"
    lock.acquire(bucket, "p", "app", ghost, max_run_seconds=HOUR)
    live = execution()
    lock.acquire(bucket, "p", "app", live, max_run_seconds=HOUR)
    assert holder(s3, bucket) == live


def test_taken_over_when_older_than_the_maximum_run_time(s3, bucket, execution):
    still_running, live = execution(), execution()
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    lock.acquire(bucket, "p", "app", still_running, max_run_seconds=HOUR, now=long_ago)
    lock.acquire(bucket, "p", "app", live, max_run_seconds=2 * HOUR)
    assert holder(s3, bucket) == live


def test_unreadable_lock_is_stale(s3, bucket, execution):
    s3.put_object(Bucket=bucket, Key=KEY, Body=b"not json")
    live = execution()
    lock.acquire(bucket, "p", "app", live, max_run_seconds=HOUR)
    assert holder(s3, bucket) == live


def release_event(bucket: str, arn: str) -> dict:
    return execution_document(
        name="app", secret_arn="arn:x", bucket=bucket, prefix="p", execution=execution_context(arn)
    )


def test_release_lock_handler_removes_only_its_own_lock(leaks, s3, bucket, execution):
    mine, other = execution(), execution()
    lock.acquire(bucket, "p", "app", mine, max_run_seconds=HOUR)

    kept = LockRelease.model_validate(
        leaks.invoke(release_lock.handler, release_event(bucket, other))
    )
    assert (kept.released, kept.lock_key) == (False, KEY)
    assert holder(s3, bucket) == mine

    gone = LockRelease.model_validate(
        leaks.invoke(release_lock.handler, release_event(bucket, mine))
    )
    assert gone.released is True
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket)

    again = leaks.invoke(release_lock.handler, release_event(bucket, mine))
    assert again["released"] is False, "releasing twice (a retried failure path) is harmless"


def test_concurrent_takers_exactly_one_wins(s3, bucket, execution):
    from concurrent.futures import ThreadPoolExecutor

    arns = [execution() for _ in range(6)]

    def take(arn: str) -> str | None:
        try:
            return lock.acquire(bucket, "p", "app", arn, max_run_seconds=HOUR).execution_arn
        except BackupAlreadyRunningError:
            return None

    with ThreadPoolExecutor(6) as pool:
        winners = [w for w in pool.map(take, arns) if w]
    assert len(winners) == 1
    assert holder(s3, bucket) == winners[0]
