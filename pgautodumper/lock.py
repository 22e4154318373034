"""The per-database run lock: one backup of a name at a time.

The lock is ``PREFIX/NAME/.lock``, written with a conditional put
(``If-None-Match: *``), holding the ARN of the execution that took it and
when. A second execution of the same name finds it and fails with
:class:`BackupAlreadyRunningError` — unless the holder is no longer running
(Step Functions says so) or the lock is older than the maximum run time, in
which case the lock is stale and is taken over with a put conditional on the
stale lock's ETag, so two executions racing for the same stale lock cannot
both win. Release deletes the lock only if this execution holds it, again
conditional on its ETag.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from pgautodumper import aws, layout
from pgautodumper.contract import ExecutionContext, ExecutionDocument, LockRelease
from pgautodumper.errors import BackupAlreadyRunningError
from pgautodumper.storage import storage_error

log = logging.getLogger(__name__)

_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict")


class LockHolder(BaseModel):
    """The body of the lock object."""

    execution_arn: str
    acquired_at: datetime


class _Existing(BaseModel):
    holder: LockHolder | None  # None: unreadable body (treated as stale)
    etag: str


def _read(bucket: str, key: str) -> _Existing | None:
    try:
        response = aws.client("s3").get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if aws.error_code(exc) in ("NoSuchKey", "404"):
            return None
        raise storage_error(exc, bucket=bucket, key=key, action="read lock") from None
    except BotoCoreError as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="read lock") from None
    try:
        holder: LockHolder | None = LockHolder.model_validate_json(response["Body"].read())
    except ValidationError:
        holder = None
    return _Existing(holder=holder, etag=response["ETag"])


def _put(bucket: str, key: str, holder: LockHolder, condition: dict[str, str]) -> bool:
    """Conditional write; False when another writer got there first."""
    try:
        aws.client("s3").put_object(
            Bucket=bucket, Key=key, Body=holder.model_dump_json().encode(),
            ContentType="application/json", **condition,
        )  # fmt: skip
    except ClientError as exc:
        if aws.error_code(exc) in _LOST_RACE:
            return False
        raise storage_error(exc, bucket=bucket, key=key, action="write lock") from None
    except BotoCoreError as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="write lock") from None
    return True


def execution_running(execution_arn: str) -> bool | None:
    """True/False from Step Functions; None when it cannot tell (not an ARN, no access)."""
    if not execution_arn.startswith("arn:") or ":execution:" not in execution_arn:
        return None
    try:
        status = aws.client("stepfunctions").describe_execution(executionArn=execution_arn)
    except ClientError as exc:
        code = aws.error_code(exc)
        if code == "ExecutionDoesNotExist":
            return False
        log.warning("cannot describe lock holder %s: %s", execution_arn, code)
        return None
    except BotoCoreError as exc:
        log.warning("cannot describe lock holder %s: %s", execution_arn, exc)
        return None
    return status["status"] == "RUNNING"


def _stale_reason(holder: LockHolder | None, now: datetime, max_age: timedelta) -> str | None:
    if holder is None:
        return "the lock object is unreadable"
    age = now - holder.acquired_at
    if age > max_age:
        return f"it is {age} old, longer than the maximum run time {max_age}"
    if execution_running(holder.execution_arn) is False:
        return f"execution {holder.execution_arn} is no longer running"
    return None


def acquire(
    bucket: str,
    prefix: str | None,
    name: str,
    execution_arn: str,
    *,
    max_run_seconds: int,
    now: datetime | None = None,
) -> LockHolder:
    """Take the lock of ``name`` for ``execution_arn``; idempotent for the same execution."""
    key = layout.lock_key(prefix, name)
    now = now or datetime.now(UTC)
    mine = LockHolder(execution_arn=execution_arn, acquired_at=now)
    # Two rounds: a lock released between our failed put and our read is simply retaken.
    for _ in range(2):
        if _put(bucket, key, mine, {"IfNoneMatch": "*"}):
            log.info("lock s3://%s/%s taken by %s", bucket, key, execution_arn)
            return mine
        existing = _read(bucket, key)
        if existing is None:
            continue
        if existing.holder is not None and existing.holder.execution_arn == execution_arn:
            return existing.holder  # a retried Lambda invocation of the same execution
        reason = _stale_reason(existing.holder, now, timedelta(seconds=max_run_seconds))
        if reason is None:
            holder = existing.holder
            assert holder is not None  # an unreadable lock is always stale
            raise BackupAlreadyRunningError(
                f"backup {name!r} is already running: s3://{bucket}/{key} is held by "
                f"{holder.execution_arn} since {holder.acquired_at.isoformat()}",
                hint="wait for that execution to finish, or stop it in the Step Functions console",
            )
        if _put(bucket, key, mine, {"IfMatch": existing.etag}):
            log.warning("lock s3://%s/%s taken over by %s: %s", bucket, key, execution_arn, reason)
            return mine
    raise BackupAlreadyRunningError(
        f"backup {name!r}: another execution took s3://{bucket}/{key} at the same moment",
        hint="that execution runs the backup; nothing to do",
    )


def release(bucket: str, prefix: str | None, name: str, execution_arn: str) -> bool:
    """Remove the lock if ``execution_arn`` holds it; True when it was removed."""
    key = layout.lock_key(prefix, name)
    existing = _read(bucket, key)
    if existing is None or existing.holder is None:
        return False
    if existing.holder.execution_arn != execution_arn:
        log.info("lock s3://%s/%s is held by another execution; left alone", bucket, key)
        return False
    try:
        aws.client("s3").delete_object(Bucket=bucket, Key=key, IfMatch=existing.etag)
    except ClientError as exc:
        if aws.error_code(exc) in (*_LOST_RACE, "NoSuchKey"):
            return False
        raise storage_error(exc, bucket=bucket, key=key, action="release lock") from None
    except BotoCoreError as exc:
        raise storage_error(exc, bucket=bucket, key=key, action="release lock") from None
    return True


def run(document: ExecutionDocument) -> LockRelease:
    """The ReleaseLock Lambda (also on every failure path: a lock we never took stays)."""
    execution: ExecutionContext = document.require("execution")
    request = document.request
    # Mode 'verify' takes no lock (its bucket may be the vault, where we only read).
    released = request.mode == "backup" and release(
        request.bucket, request.prefix, request.name, execution.id
    )
    return LockRelease(released=released, lock_key=layout.lock_key(request.prefix, request.name))
