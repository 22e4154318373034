"""Naming a task's failure: its outcome document first, then ECS's own facts (moto S3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from pgautodumper import errors, layout, outcome
from pgautodumper.contract import ExecutionDocument, FailureInfo, TaskInput, TaskSizing
from pgautodumper.errors import DumpFailedError, StorageAccessDeniedError
from tests.lambdas.conftest import execution_document, preflight_result

STARTED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/pgautodumper/0123456789abcdef"


@pytest.fixture
def document(bucket) -> ExecutionDocument:
    keys = layout.backup_keys("p", "orders", STARTED, "run-1")
    return ExecutionDocument.model_validate(
        execution_document(
            name="orders",
            secret_arn="arn:x",
            bucket=bucket,
            prefix="p",
            preflight=preflight_result(keys, bucket),
        )
    )


@pytest.fixture(autouse=True)
def log_group(monkeypatch) -> None:
    monkeypatch.setenv(outcome.LOG_GROUP_ENV, "/pgautodumper/task")
    monkeypatch.setenv(outcome.LOG_STREAM_PREFIX_ENV, "task/pgautodumper")
    monkeypatch.delenv(outcome.CLUSTER_ENV, raising=False)


def ecs_cause(**task: object) -> str:
    containers = task.pop("Containers", [{"Name": "pgautodumper", "ExitCode": 1}])
    return json.dumps({"TaskArn": TASK_ARN, "LastStatus": "STOPPED", "Containers": containers,
                       **task})  # fmt: skip


def failed(cause: str, error: str = "States.TaskFailed") -> FailureInfo:
    return FailureInfo(Error=error, Cause=cause)


def task_input(document: ExecutionDocument) -> TaskInput:
    return document.require("preflight").task


def test_the_outcome_document_names_the_failure(document) -> None:
    outcome.write_outcome(
        task_input(document), "backup", DumpFailedError("pg_dump exited with code 1: boom")
    )
    named = outcome.explain(failed(ecs_cause()), "backup", document)
    assert (named.error, named.state, named.exit_code) == ("DumpFailedError", "Dump", 21)
    assert named.message == "pg_dump exited with code 1: boom"
    assert named.next_step == DumpFailedError.next_step
    assert named.task_arn == TASK_ARN
    assert named.log_url.endswith("$252Fpgautodumper$252Ftask/log-events/task$252Fpgautodumper"
                                  "$252F0123456789abcdef")  # fmt: skip
    assert json.loads(named.cause)["errorType"] == "DumpFailedError"


def test_an_outcome_of_another_run_is_ignored(document) -> None:
    # An earlier verify of the same backup, by another execution, left its outcome.
    earlier = task_input(document).model_copy(update={"run_id": "an-earlier-run"})
    outcome.write_outcome(earlier, "verify", errors.ChecksumMismatchError("old news"))
    named = outcome.explain(failed(ecs_cause(Containers=[{"ExitCode": 22}])), "verify", document)
    assert named.error == "RestoreFailedError" and "left no outcome document" in named.message


@pytest.mark.parametrize(
    ("task", "error", "needle"),
    [
        ({"Containers": [{"ExitCode": 137}]}, errors.TaskOutOfMemoryError, "exit code 137"),
        (
            {"Containers": [{"ExitCode": 137, "Reason": "OutOfMemoryError: Container killed"}]},
            errors.TaskOutOfMemoryError,
            "OutOfMemoryError",
        ),
        (
            {"StopCode": "TaskFailedToStart", "StoppedReason": "ResourceInitializationError: "
             "unable to pull secrets", "Containers": [{"Name": "pgautodumper"}]},
            errors.TaskStartFailedError,
            "ResourceInitializationError",
        ),
        ({"Containers": [{"ExitCode": 31}]}, StorageAccessDeniedError, "exited with code 31"),
        ({"Containers": [{"ExitCode": 1}]}, errors.UnexpectedError, "exited with code 1"),
        ({"Containers": [{"ExitCode": 3}]}, errors.TaskError, "exited with code 3"),
    ],
)  # fmt: skip
def test_without_an_outcome_ecs_facts_name_the_failure(document, task, error, needle) -> None:
    named = outcome.explain(failed(ecs_cause(**task)), "verify", document)
    assert named.error == error.__name__ and needle in named.message
    assert named.state == "Verify" and named.next_step == error.next_step


def test_a_timeout_and_a_start_failure_before_any_task(document) -> None:
    timed_out = outcome.explain(failed("", "States.Timeout"), "backup", document)
    assert timed_out.error == "TaskTimeoutError"
    assert f"({TaskSizing().timeout_seconds} s)" in timed_out.message
    capacity = outcome.explain(
        failed("Capacity is unavailable at this time", "ECS.AmazonECSException"), "backup", document
    )
    assert (
        capacity.error == "TaskStartFailedError" and "Capacity is unavailable" in capacity.message
    )


def test_the_lambda_returns_the_named_failure_at_the_error_path(document) -> None:
    from lambdas import task_failure
    from tests.lambdas.conftest import FakeContext

    raw = failed(ecs_cause(Containers=[{"ExitCode": 137}]))
    event = {
        "task": "backup",
        "document": {**document.model_dump(mode="json"), "error": raw.model_dump(by_alias=True)},
    }
    named = task_failure.handler(event, FakeContext())
    assert named["Error"] == "TaskOutOfMemoryError" and named["state"] == "Dump"
    assert FailureInfo.model_validate(named).exit_code == 137
