"""Why a Dump or Verify task failed: what it left behind, and the named failure it amounts to.

A task that fails in our code writes ``<stem>.<task>.outcome.json`` (a
:class:`TaskOutcome`: the error's class name, message and exit code) before it
exits non-zero. When a ``.sync`` task fails, Step Functions only knows
``States.TaskFailed`` and the ECS task JSON; ExplainDumpFailure and
ExplainVerifyFailure call :func:`explain`, which reads the outcome back and
turns the failure into a :class:`FailureInfo` carrying the error's name,
message, next step and a link to the task's log stream.

When there is no outcome (the task was killed, never started, or could not
write to S3 either), ECS's own facts name the failure: exit 137 or an
``OutOfMemoryError`` reason is :class:`TaskOutOfMemoryError`, a task that
never ran is :class:`TaskStartFailedError` with ECS's stop reason, a timeout
is :class:`TaskTimeoutError`, and any other exit code is the error class that
exits with it (errors.py's table, read backwards).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from pgautodumper import __version__, aws, errors, storage
from pgautodumper.contract import ExecutionDocument, FailureInfo, TaskInput, TaskName
from pgautodumper.errors import (
    BackupNotFoundError,
    PgautodumperError,
    StorageError,
    TaskError,
    TaskOutOfMemoryError,
    TaskStartFailedError,
    TaskTimeoutError,
)

log = logging.getLogger(__name__)

# Where the tasks' awslogs driver writes (terraform/ecs.tf): the log group, and the
# stream prefix "<awslogs-stream-prefix>/<container name>"; a stream ends with the task id.
LOG_GROUP_ENV = "PGAUTODUMPER_TASK_LOG_GROUP"
LOG_STREAM_PREFIX_ENV = "PGAUTODUMPER_TASK_LOG_STREAM_PREFIX"
CLUSTER_ENV = "PGAUTODUMPER_CLUSTER_ARN"
OOM_EXIT_CODE = 137  # 128 + SIGKILL: what the kernel's OOM killer leaves
STATE_OF_TASK: dict[str, str] = {"backup": "Dump", "verify": "Verify"}


class TaskOutcome(BaseModel):
    """The body of ``<stem>.<task>.outcome.json``: written by a failing task, read by Explain."""

    task: TaskName
    run_id: str
    error: str
    message: str
    exit_code: int
    finished_at: datetime
    tool_version: str


def write_outcome(task_input: TaskInput, task: TaskName, exc: PgautodumperError) -> None:
    """Store why this task failed; best effort, since S3 may be the reason."""
    outcome = TaskOutcome(
        task=task,
        run_id=task_input.run_id,
        error=type(exc).__name__,
        message=exc.render(),
        exit_code=exc.exit_code,
        finished_at=datetime.now(UTC),
        tool_version=__version__,
    )
    key = task_input.keys.outcome(task)
    try:
        storage.put(task_input.bucket, key, outcome.model_dump_json(indent=2).encode())
    except StorageError as write_error:
        log.warning("could not store the outcome at %s: %s", key, write_error.message)


def read_outcome(task_input: TaskInput, task: TaskName) -> TaskOutcome | None:
    """This run's outcome document, or None (absent, unreadable, or another run's)."""
    key = task_input.keys.outcome(task)
    try:
        outcome = TaskOutcome.model_validate_json(storage.get(task_input.bucket, key))
    except BackupNotFoundError:
        return None
    except (StorageError, ValueError) as exc:
        log.warning("cannot read the outcome %s: %s", key, exc)
        return None
    return outcome if outcome.run_id == task_input.run_id else None


# -- ECS's facts ----------------------------------------------------------------------


class StoppedTask(BaseModel):
    """What Step Functions' cause (a DescribeTasks task, PascalCase) says about a task."""

    task_arn: str | None = None
    stop_code: str | None = None
    stopped_reason: str = ""
    exit_code: int | None = None
    container_reason: str = ""

    @classmethod
    def from_cause(cls, cause: Any) -> StoppedTask | None:
        if not isinstance(cause, dict) or not ("Containers" in cause or "TaskArn" in cause):
            return None
        containers = cause.get("Containers") or [{}]
        container = containers[0]
        return cls(
            task_arn=cause.get("TaskArn"),
            stop_code=cause.get("StopCode"),
            stopped_reason=cause.get("StoppedReason") or "",
            exit_code=container.get("ExitCode"),
            container_reason=container.get("Reason") or "",
        )

    @property
    def never_ran(self) -> bool:
        return self.stop_code == "TaskFailedToStart" or self.exit_code is None


def log_url(task_arn: str | None) -> str | None:
    """The CloudWatch console page of a task's log stream (the awslogs driver's name)."""
    group = os.environ.get(LOG_GROUP_ENV)
    prefix = os.environ.get(LOG_STREAM_PREFIX_ENV)
    if not task_arn or not group or not prefix or not task_arn.startswith("arn:"):
        return None
    region = task_arn.split(":")[3]
    stream = f"{prefix}/{task_arn.rsplit('/', 1)[-1]}"

    # The console's fragment encodes twice, with '$25' for '%'.
    def encode(value: str) -> str:
        return quote(quote(value, safe=""), safe="").replace("%", "$")

    domain = "amazonaws.cn" if task_arn.startswith("arn:aws-cn:") else "aws.amazon.com"
    return (
        f"https://{region}.console.{domain}/cloudwatch/home?region={region}"
        f"#logsV2:log-groups/log-group/{encode(group)}/log-events/{encode(stream)}"
    )


def stopped_task_of_run(run_id: str) -> str | None:
    """The newest stopped task this run started (``StartedBy`` is the run id), for timeouts."""
    cluster = os.environ.get(CLUSTER_ENV)
    if not cluster:
        return None
    try:
        arns = aws.client("ecs").list_tasks(
            cluster=cluster, startedBy=run_id, desiredStatus="STOPPED"
        )["taskArns"]
    except (ClientError, BotoCoreError) as exc:
        log.warning("cannot list the tasks of run %s: %s", run_id, exc)
        return None
    return arns[-1] if arns else None


# -- the explanation --------------------------------------------------------------------


def _named(
    failure: FailureInfo, cls: type[PgautodumperError] | str, message: str, **facts: Any
) -> FailureInfo:
    name = cls if isinstance(cls, str) else cls.__name__
    next_step = errors.next_step_for(name)
    details = {"errorType": name, "errorMessage": message, "nextStep": next_step, **facts}
    return FailureInfo(
        Error=name,
        Cause=json.dumps({k: v for k, v in details.items() if v is not None}),
        state=failure.state,
        message=message,
        next_step=next_step,
        **facts,
    )


def explain(failure: FailureInfo, task: TaskName, document: ExecutionDocument) -> FailureInfo:
    """The named failure of a task, from its outcome, its exit code or ECS's stop reason."""
    task_input: TaskInput = document.require("preflight").task
    failure = failure.model_copy(update={"state": STATE_OF_TASK[task]})
    what = f"the {task} task of {document.request.name!r}"
    stopped = StoppedTask.from_cause(failure.cause_json)
    task_arn = stopped.task_arn if stopped else stopped_task_of_run(task_input.run_id)
    facts: dict[str, Any] = {"log_url": log_url(task_arn), "task_arn": task_arn}
    outcome = read_outcome(task_input, task)
    if outcome is not None:
        return _named(failure, outcome.error, outcome.message, exit_code=outcome.exit_code, **facts)
    if failure.error == "States.Timeout":
        timeout = document.require("preflight").sizing.timeout_seconds
        return _named(
            failure,
            TaskTimeoutError,
            f"{what} ran longer than task.timeout_seconds ({timeout} s) and was stopped",
            **facts,
        )
    if stopped is None:
        if failure.error.startswith(("ECS.", "AmazonECS.")):
            return _named(
                failure,
                TaskStartFailedError,
                f"{what} could not be started: {failure.error}: {failure.cause}",
                **facts,
            )
        return _named(failure, failure.error, failure.cause or failure.error, **facts)
    return _from_stopped_task(failure, stopped, what, task_input, task, facts)


def _from_stopped_task(
    failure: FailureInfo,
    stopped: StoppedTask,
    what: str,
    task_input: TaskInput,
    task: TaskName,
    facts: dict[str, Any],
) -> FailureInfo:
    reason = stopped.container_reason or stopped.stopped_reason
    if "OutOfMemoryError" in reason or stopped.exit_code == OOM_EXIT_CODE:
        return _named(
            failure,
            TaskOutOfMemoryError,
            f"{what} was killed at its memory limit (exit code {stopped.exit_code}"
            + (f": {reason})" if reason else ")"),
            exit_code=stopped.exit_code,
            **facts,
        )
    if stopped.never_ran:
        return _named(
            failure,
            TaskStartFailedError,
            f"{what} never started: {stopped.stopped_reason or stopped.stop_code or 'no reason'}",
            **facts,
        )
    code = stopped.exit_code
    assert code is not None
    cls = errors.by_exit_code(code) or TaskError
    where = f"s3://{task_input.bucket}/{task_input.keys.outcome(task)}"
    return _named(
        failure,
        cls,
        f"{what} exited with code {code} ({cls.__name__}) and left no outcome document at "
        f"{where}; its log has the full message",
        exit_code=code,
        **facts,
    )
