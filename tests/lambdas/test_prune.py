"""Prune in S3 (moto): deletes what the policy says, manifest first, respects Object Lock."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest

from lambdas import prune as prune_lambda
from pgautodumper import layout, prune
from pgautodumper.contract import PruneResult, RetentionPolicy
from tests.lambdas.conftest import execution_document, preflight_result, put_backup

NOW = datetime.now(UTC).replace(microsecond=0)


def keys_in(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def all_keys(k: layout.BackupKeys) -> set[str]:
    return {k.dump, k.manifest, k.verified}


def event(bucket: str, current: layout.BackupKeys, **retention: int) -> dict:
    return execution_document(
        name=current.name,
        secret_arn="arn:x",
        bucket=bucket,
        prefix=current.prefix,
        retention={"keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0, **retention},
        preflight=preflight_result(current, bucket),
    )


def test_handler_keeps_the_policy_and_deletes_the_rest(leaks, s3, bucket):
    days = [put_backup(s3, bucket, "app", NOW - timedelta(days=d), prefix="p") for d in range(6)]
    other = put_backup(s3, bucket, "other", NOW - timedelta(days=30), prefix="p")

    output = leaks.invoke(prune_lambda.handler, event(bucket, days[0], keep_last=2))

    result = PruneResult.model_validate(output)
    assert result.kept == [days[0].stem, days[1].stem]
    assert result.deleted == [k.stem for k in days[2:]]
    assert result.locked == [] and result.dry_run is False
    remaining = keys_in(s3, bucket)
    assert {days[0].dump, days[0].manifest, days[1].dump, days[1].manifest} <= remaining
    assert not remaining & set().union(*(all_keys(k) for k in days[2:]))
    assert {other.dump, other.manifest} <= remaining, "other names are never touched"


def test_the_newest_verified_backup_survives(leaks, s3, bucket):
    current = put_backup(s3, bucket, "app", NOW)
    verified = put_backup(s3, bucket, "app", NOW - timedelta(days=3), verdict="passed")
    failed = put_backup(s3, bucket, "app", NOW - timedelta(days=1), verdict="failed")
    older = put_backup(s3, bucket, "app", NOW - timedelta(days=5), verdict="passed")

    result = PruneResult.model_validate(
        leaks.invoke(prune_lambda.handler, event(bucket, current, keep_last=1))
    )
    assert set(result.kept) == {current.stem, verified.stem}
    assert set(result.deleted) == {failed.stem, older.stem}
    assert all_keys(verified) <= keys_in(s3, bucket)


def test_the_current_run_survives_even_when_older_backups_exist_later(leaks, s3, bucket):
    # A backup with a later timestamp than this run's (clock skew, a manual run).
    later = put_backup(s3, bucket, "app", NOW + timedelta(hours=1))
    current = put_backup(s3, bucket, "app", NOW)
    result = prune.prune(
        bucket, "", "app", RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0,
                                           keep_monthly=0), current_stem=current.stem,
    )  # fmt: skip
    assert set(result.kept) == {later.stem, current.stem} and result.deleted == []


def test_incomplete_leftovers_older_than_the_grace_are_removed(leaks, s3, bucket):
    current = put_backup(s3, bucket, "app", NOW)
    leftover = put_backup(s3, bucket, "app", NOW - timedelta(days=2), complete=False)
    policy = RetentionPolicy(keep_last=5, incomplete_grace_hours=24)

    # The age that counts is the object's (LastModified): it may be a running upload.
    young = prune.prune(bucket, "", "app", policy, now=datetime.now(UTC) + timedelta(hours=23))
    assert young.incomplete_deleted == [] and leftover.dump in keys_in(s3, bucket)

    old = prune.prune(bucket, "", "app", policy, now=datetime.now(UTC) + timedelta(hours=25))
    assert old.incomplete_deleted == [leftover.stem]
    remaining = keys_in(s3, bucket)
    assert leftover.dump not in remaining
    assert {current.dump, current.manifest} <= remaining


def test_dry_run_deletes_nothing(leaks, s3, bucket):
    backups = [put_backup(s3, bucket, "app", NOW - timedelta(days=d)) for d in range(4)]
    put_backup(s3, bucket, "app", NOW - timedelta(days=9), complete=False)
    before = keys_in(s3, bucket)
    policy = RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)

    later = datetime.now(UTC) + timedelta(days=2)
    result = prune.prune(bucket, "", "app", policy, dry_run=True, now=later)
    assert result.dry_run is True
    assert result.deleted == [k.stem for k in backups[1:]]
    assert len(result.incomplete_deleted) == 1
    assert keys_in(s3, bucket) == before


def test_prune_is_idempotent(leaks, s3, bucket):
    for d in range(10):
        put_backup(s3, bucket, "app", NOW - timedelta(days=d))
    policy = RetentionPolicy(keep_last=3, keep_daily=0, keep_weekly=2, keep_monthly=0)
    first = prune.prune(bucket, "", "app", policy)
    assert first.deleted
    second = prune.prune(bucket, "", "app", policy)
    assert second.deleted == [] and second.kept == first.kept


@pytest.fixture
def locked_bucket(s3) -> str:
    name = f"pgad-lock-{secrets.token_hex(5)}"
    s3.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


LOCK = {"ObjectLockMode": "COMPLIANCE", "ObjectLockRetainUntilDate": NOW + timedelta(days=30)}


def test_object_locked_backups_are_skipped_and_reported(leaks, s3, locked_bucket):
    current = put_backup(s3, locked_bucket, "app", NOW)
    locked = put_backup(s3, locked_bucket, "app", NOW - timedelta(days=1), **LOCK)
    free = put_backup(s3, locked_bucket, "app", NOW - timedelta(days=2))

    result = PruneResult.model_validate(
        leaks.invoke(prune_lambda.handler, event(locked_bucket, current, keep_last=1))
    )
    assert result.locked == [locked.stem]
    assert result.deleted == [free.stem]
    remaining = keys_in(s3, locked_bucket)
    assert {locked.dump, locked.manifest} <= remaining
    assert not remaining & {free.dump, free.manifest}
    versions = s3.list_object_versions(Bucket=locked_bucket, Prefix=free.stem)
    assert not versions.get("Versions"), "every version of a deleted backup is gone"


def test_manifest_is_deleted_before_the_data(leaks, s3, locked_bucket):
    current = put_backup(s3, locked_bucket, "app", NOW)
    # Manifest locked, dump free: the manifest stops the deletion, the backup stays complete.
    a = put_backup(s3, locked_bucket, "app", NOW - timedelta(days=1), complete=False)
    s3.put_object(Bucket=locked_bucket, Key=a.manifest, Body=_manifest(a), **LOCK)
    # Dump locked, manifest free: the manifest goes first, the dump remains as an orphan.
    b = put_backup(s3, locked_bucket, "app", NOW - timedelta(days=2), complete=False, **LOCK)
    s3.put_object(Bucket=locked_bucket, Key=b.manifest, Body=_manifest(b))

    result = prune.prune(
        locked_bucket, "", "app", RetentionPolicy(keep_last=1, keep_daily=0, keep_weekly=0,
                                                  keep_monthly=0), current_stem=current.stem,
    )  # fmt: skip
    assert sorted(result.locked) == sorted([a.stem, b.stem])
    remaining = keys_in(s3, locked_bucket)
    assert {a.manifest, a.dump} <= remaining, "a locked manifest keeps its dump"
    assert b.manifest not in remaining and b.dump in remaining, "never a dangling manifest"


def _manifest(keys: layout.BackupKeys) -> bytes:
    from tests.lambdas.conftest import make_manifest

    return make_manifest(keys, 1000)
