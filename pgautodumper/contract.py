"""The contract: every document that travels through a backup execution.

One JSON document flows through the Step Functions execution. Each state reads
what it needs and writes its typed result at a fixed ``ResultPath``:

    $.request       BackupRequest      the execution input a schedule sends (Start fills
                                       in the top-level defaults)
    $.execution     ExecutionContext   Start, from the context object: id, name, start time
    $.target        ConnectionTarget   LookupSecret
    $.preflight     PreflightResult    Preflight: takes the lock and decides the TaskInput
    $.dump_task     TaskRun            Dump (the ECS task's ARN)
    $.dump          DumpResult         Record (read from the manifest)
    $.verify_task   TaskRun            Verify
    $.verify        VerifyResult       RecordVerify (read from the verdict), or SkipVerify
    $.prune         PruneResult        Prune
    $.prune_error   FailureInfo        Prune's Catch: the run succeeds with a warning
    $.lock          LockRelease        ReleaseLock
    $.error         FailureInfo        any other Catch; ExplainDumpFailure and
                                       ExplainVerifyFailure replace a task's raw failure
                                       with its named one
    $.report        RunReport          Notify; the execution's output

The ASL, the handlers, the tasks (``TaskInput`` in ``PGAUTODUMPER_TASK``) and
the tests all use these models; an edge in an execution history must parse as
its model. No model has a password field.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pgautodumper import layout
from pgautodumper.errors import RequestInvalidError, UsageError
from pgautodumper.plan import DEFAULT_STREAM_THRESHOLD

SslMode = Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]
TaskName = layout.TaskName

# Fargate's task CPU units → the memory sizes (MiB) it accepts, from
# https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html
# ("Supported CPU and memory combinations"); terraform/variables.tf checks the same table.
FARGATE_MEMORY: dict[int, range | tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
# How long a backup waits for a table lock (a migration's), and a restore for any
# lock in its target, before failing by name (LockTimeoutError).
DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS = 300


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
    """The Fargate size of this run's tasks: RunTask overrides, validated as Fargate pairs."""

    cpu: int = Field(1024, description="Fargate CPU units of the dump and verify tasks")
    memory: int = Field(2048, description="Fargate memory (MiB) of the dump and verify tasks")
    timeout_seconds: int = Field(6 * 3600, ge=60, le=7 * 24 * 3600)

    @model_validator(mode="after")
    def _fargate_pair(self) -> TaskSizing:
        sizes = FARGATE_MEMORY.get(self.cpu)
        if sizes is None:
            raise ValueError(
                f"task.cpu {self.cpu} is not a Fargate size; use one of "
                f"{', '.join(map(str, FARGATE_MEMORY))}"
            )
        if self.memory not in sizes:
            raise ValueError(
                f"task.memory {self.memory} MiB is not valid with task.cpu {self.cpu}; "
                f"Fargate accepts {min(sizes)}-{max(sizes)} MiB"
                + (f" in steps of {sizes.step}" if isinstance(sizes, range) else "")
            )
        return self

    @property
    def vcpus(self) -> int:
        return max(1, self.cpu // 1024)


class BackupRequest(Model):
    """The execution input: what a schedule (or an operator) asks for."""

    name: str = Field(description="backup name: the folder under the prefix")
    secret_arn: str = Field(description="Secrets Manager secret in the RDS format")
    bucket: str
    prefix: str = ""
    mode: Literal["backup", "verify"] = Field(
        "backup",
        description="backup: take a backup (and verify it when 'verify' is true); verify: only "
        "verify the newest complete backup of the name in the bucket (e.g. the vault's copy)",
    )
    verify: bool = Field(False, description="restore into a scratch database and check")
    retention: RetentionPolicy = Field(default_factory=RetentionPolicy)
    notify_on_success: bool = False
    sslmode: SslMode = Field(
        "require",
        description="libpq sslmode; require encrypts, verify-full also authenticates the server "
        "(recommended: RDS and Aurora CAs are built in)",
    )
    ssl_root_cert: str | None = Field(
        None,
        description="ARN of a Secrets Manager secret or SSM parameter holding the CA's PEM, for "
        "verify-ca/verify-full against a self-managed server",
    )
    task: TaskSizing = Field(default_factory=TaskSizing)
    jobs: int | None = Field(
        None, ge=1, le=64, description="parallel streams [default: the task's vCPUs]"
    )
    lock_wait_timeout_seconds: int = Field(
        DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS,
        ge=1,
        le=24 * 3600,
        description="how long the dump waits for a table lock before failing with LockTimeoutError",
    )
    stream_threshold_bytes: int = Field(
        DEFAULT_STREAM_THRESHOLD,
        ge=1024 * 1024,
        description="tables at least this big stream by COPY in parallel parts; smaller ones "
        "go into pg_dump's archive",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        try:
            return layout.check_name(value)
        except UsageError as exc:
            raise ValueError(exc.render()) from None


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


class TaskInput(Model):
    """What Preflight decided for this run's Dump and Verify tasks: their one input.

    The state machine passes it as JSON in the container's ``PGAUTODUMPER_TASK``
    environment variable; ``pgautodumper backup`` and ``verify`` parse it at
    their boundary, and their flags map onto the same fields.
    """

    bucket: str
    keys: layout.BackupKeys = Field(description="the backup this task writes or verifies")
    run_id: str = Field(description="the run (execution) this task belongs to")
    secret_arn: str | None = None
    secret_version_id: str | None = None
    sslmode: SslMode | None = None
    ssl_root_cert: str | None = None
    pg_dump_major: int | None = None
    part_size_bytes: int | None = None
    jobs: int = Field(1, ge=1, le=64)
    lock_wait_timeout_seconds: int = Field(DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS, ge=1)
    stream_threshold_bytes: int = Field(DEFAULT_STREAM_THRESHOLD, ge=1024 * 1024)


class PreflightResult(Model):
    server_version: str
    server_version_num: int
    database_size_bytes: int
    is_replica: bool
    warnings: list[str] = Field(default_factory=list)
    lock_key: str
    sizing: TaskSizing = Field(description="the RunTask cpu/memory overrides and timeout")
    task: TaskInput


class TaskRun(Model):
    """A task that ran to completion (what Dump and Verify keep of the ECS result)."""

    task_arn: str


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


def scratch_lacks(extensions: list[str], collations: list[str]) -> str:
    """What a verify's scratch server lacked, for a WARN verdict's reason and its message."""
    found = [f"extension(s) {', '.join(extensions)}"] if extensions else []
    found += [f"collation(s) {', '.join(collations)}"] if collations else []
    return " and ".join(found)


class VerifyResult(Model):
    verdict: Literal["passed", "warn", "failed", "skipped"]
    verified_key: str | None = None
    restore_seconds: float | None = Field(
        None, description="the measured recovery time: restore into the scratch server"
    )
    mismatched_tables: list[str] = Field(default_factory=list)
    missing_extensions: list[str] = Field(default_factory=list)
    missing_collations: list[str] = Field(default_factory=list)
    unchecked_tables: list[str] = Field(default_factory=list)
    reason: str | None = None
    checked_at: datetime | None = None


class PruneResult(Model):
    dry_run: bool = False
    deleted: list[str] = Field(default_factory=list, description="stems of deleted backups")
    kept: list[str] = Field(default_factory=list)
    incomplete_deleted: list[str] = Field(default_factory=list)
    locked: list[str] = Field(default_factory=list, description="skipped: under Object Lock")


class FailureInfo(Model):
    """What a Catch puts at ``$.error`` (``Error``, ``Cause``), and what we make of it.

    A Catch writes only ``Error`` and ``Cause``; ExplainDumpFailure and
    ExplainVerifyFailure replace a task's raw failure with the named one and
    fill in the rest (the ``Cause`` then is the same facts as JSON, so the
    execution's own output carries them too).
    """

    error: str = Field(alias="Error")
    cause: str = Field("", alias="Cause")
    state: str | None = None
    message: str | None = None
    next_step: str | None = None
    log_url: str | None = None
    exit_code: int | None = None
    task_arn: str | None = None

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
    dashboard_url: str | None = None
    dump: DumpResult | None = None
    verify: VerifyResult | None = None
    prune: PruneResult | None = None
    error: FailureInfo | None = None
    warnings: list[str] = Field(default_factory=list)


class LockRelease(Model):
    """What ReleaseLock returns (``$.lock``)."""

    released: bool
    lock_key: str


class ExecutionDocument(Model):
    """The whole execution document (``$``) as a handler receives it.

    Each handler requires the parts the states before it wrote and says which
    one is missing (a wiring mistake in the ASL) instead of failing on None.
    """

    request: BackupRequest
    execution: ExecutionContext | None = None
    target: ConnectionTarget | None = None
    preflight: PreflightResult | None = None
    dump_task: TaskRun | None = None
    dump: DumpResult | None = None
    verify_task: TaskRun | None = None
    verify: VerifyResult | None = None
    prune: PruneResult | None = None
    error: FailureInfo | None = None
    prune_error: FailureInfo | None = None

    def require(self, part: str) -> Any:
        value = getattr(self, part)
        if value is None:
            raise UsageError(
                f"execution document for {self.request.name!r} has no '{part}'",
                hint=f"the state machine must pass ${part} (ResultPath of an earlier state)",
            )
        return value


class TaskFailureEvent(Model):
    """The input of ExplainDumpFailure / ExplainVerifyFailure: which task, and the document."""

    task: TaskName
    document: ExecutionDocument


M = TypeVar("M", bound=BaseModel)


def parse_model(model: type[M], event: Any, *, what: str) -> M:
    """Parse at a boundary; a document that fails validation is a named error, not a traceback."""
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or what}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise RequestInvalidError(f"invalid {what}: {problems}") from None


def parse_document(event: Any) -> ExecutionDocument:
    return parse_model(ExecutionDocument, event, what="execution document")
