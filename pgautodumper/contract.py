"""The contract: every document that travels through a backup execution.

One JSON document flows through the Step Functions execution. Each state reads
what it needs and writes its typed result at a fixed ``ResultPath``:

    $               BackupRequest      (the execution input a schedule sends; Normalize
                                        moves its ``verify`` flag to $.verify_requested)
    $.execution     ExecutionContext   (from the context object: id, name, start time)
    $.target        ConnectionTarget   LookupSecret
    $.preflight     PreflightResult    Preflight (takes the lock)
    $.dump          DumpResult         Record (read from the manifest)
    $.verify        VerifyResult       Verify task + its verdict
    $.prune         PruneResult        Prune
    $.prune_error   FailureInfo        Prune's Catch: the run succeeds with a warning
    $.lock          LockRelease        ReleaseLock
    $.error         FailureInfo        any other Catch
    $.report        RunReport          Notify; the execution's output

The ASL, the handlers, the task and the tests all use these models; an edge in
an execution history must parse as its model. No model has a password field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pgautodumper import layout
from pgautodumper.errors import UsageError


class Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class RetentionPolicy(Model):
    """Grandfather-father-son retention, as restic and borg define it."""

    keep_last: int = Field(7, ge=1, description="always keep the newest N complete backups")
    keep_daily: int = Field(7, ge=0)
    keep_weekly: int = Field(4, ge=0)
    keep_monthly: int = Field(6, ge=0)
    keep_yearly: int = Field(0, ge=0)
    incomplete_grace_hours: int = Field(
        24, ge=1, description="leftovers without a manifest older than this are removed"
    )


class TaskSizing(Model):
    cpu: int = Field(1024, description="Fargate CPU units for the dump/verify task")
    memory: int = Field(2048, description="Fargate memory (MiB) for the dump/verify task")
    timeout_seconds: int = Field(6 * 3600, ge=60, le=7 * 24 * 3600)


class BackupRequest(Model):
    """The execution input: what a schedule (or an operator) asks for."""

    name: str = Field(description="backup name: the folder under the prefix")
    secret_arn: str = Field(description="Secrets Manager secret in the RDS format")
    bucket: str
    prefix: str = ""
    verify: bool = Field(False, description="restore into a scratch database and check")
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    notify_on_success: bool = False
    sslmode: str = "require"
    task: TaskSizing = Field(default_factory=TaskSizing)

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        return layout.check_name(value)


class ExecutionContext(Model):
    """What the ASL copies from the context object (``$$.Execution``)."""

    id: str = Field(description="execution ARN")
    name: str
    start_time: datetime

    @property
    def run_id(self) -> str:
        return layout.sanitize_run_id(self.name)


class ConnectionTarget(Model):
    """Where the database is; the secret version is pinned for the whole run."""

    secret_arn: str
    secret_version_id: str
    host: str
    port: int
    dbname: str
    user: str


class PreflightResult(Model):
    server_version: str
    server_version_num: int
    pg_dump_major: int
    database_size_bytes: int
    part_size_bytes: int
    is_replica: bool
    warnings: list[str] = Field(default_factory=list)
    run_id: str
    started_at: datetime
    dump_key: str
    manifest_key: str
    lock_key: str


class DumpResult(Model):
    """A completed backup, as its manifest describes it (written by Record)."""

    dump_key: str
    manifest_key: str
    stored_bytes: int
    raw_bytes: int
    sha256: str
    duration_seconds: float
    throughput_bytes_per_second: float
    tables: int
    total_rows: int
    previous_stored_bytes: int | None = None
    size_anomaly: bool = False


class VerifyResult(Model):
    verdict: Literal["passed", "failed", "skipped"]
    verified_key: str | None = None
    restore_seconds: float | None = None
    mismatched_tables: list[str] = Field(default_factory=list)


class PruneResult(Model):
    dry_run: bool = False
    deleted: list[str] = Field(default_factory=list, description="stems of deleted backups")
    kept: list[str] = Field(default_factory=list)
    incomplete_deleted: list[str] = Field(default_factory=list)
    locked: list[str] = Field(default_factory=list, description="skipped: under Object Lock")


class FailureInfo(Model):
    """What a Catch puts at ``$.error``; the cause is parsed when it is JSON."""

    error: str = Field(alias="Error")
    cause: str = Field("", alias="Cause")
    state: str | None = None

    @property
    def cause_json(self) -> Any:
        try:
            return json.loads(self.cause)
        except ValueError:
            return None


class RunReport(Model):
    status: Literal["SUCCEEDED", "SUCCEEDED_WITH_WARNINGS", "FAILED", "SKIPPED"]
    name: str
    execution_arn: str | None = None
    console_url: str | None = None
    dump: DumpResult | None = None
    verify: VerifyResult | None = None
    prune: PruneResult | None = None
    error: FailureInfo | None = None
    warnings: list[str] = Field(default_factory=list)


class LockRelease(Model):
    """What ReleaseLock returns (``$.lock``)."""

    released: bool
    lock_key: str


class ExecutionDocument(BackupRequest):
    """The whole execution document (``$``) as a handler receives it.

    Each handler requires the parts the states before it wrote and says which
    one is missing (a wiring mistake in the ASL) instead of failing on None.
    ``prune_error`` is where the ASL's Catch on Prune puts a pruning failure:
    the backup still succeeded, with a warning.
    """

    verify_requested: bool = Field(
        False, description="the request's verify flag, moved here by the ASL's Normalize state"
    )
    execution: ExecutionContext | None = None
    target: ConnectionTarget | None = None
    preflight: PreflightResult | None = None
    dump: DumpResult | None = None
    verify: VerifyResult | None = None
    prune: PruneResult | None = None
    error: FailureInfo | None = None
    prune_error: FailureInfo | None = None

    def require(self, part: str) -> Any:
        value = getattr(self, part)
        if value is None:
            raise UsageError(
                f"execution document for {self.name!r} has no '{part}'",
                hint=f"the state machine must pass ${part} (ResultPath of an earlier state)",
            )
        return value
