"""The real definition, handlers and dump task, path by path, in the local runtime.

Each test asserts the visited states (from the execution history), the
notifications the SQS subscriber received and the S3 contents, and scans
everything — history, output, notifications, task logs, captured log lines —
for the database password.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from pgautodumper import contract
from pgautodumper.errors import TaskTimeoutError
from pgautodumper.local.emulator import Emulator
from pgautodumper.local.run import LocalRunResult, run_in
from tests.conftest import BACKUP_PASSWORD

# Whole workflows on the emulator, mostly waiting on it: alongside the rest.
pytestmark = [pytest.mark.slow, pytest.mark.background]
SAMPLE = """
CREATE TABLE items (id int PRIMARY KEY, label text, price numeric(8,2), seen timestamptz);
INSERT INTO items SELECT g, 'item ' || g, g / 7.0, now() FROM generate_series(1, 2000) g;
CREATE TABLE notes (id serial PRIMARY KEY, body jsonb);
INSERT INTO notes (body) SELECT jsonb_build_object('n', g) FROM generate_series(1, 500) g;
"""


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def database(make_database) -> str:
    return make_database(SAMPLE)


@pytest.fixture
def run(emu: Emulator, database: str, capfd):
    def go(request: dict | None = None, *, url: str | None = None, **kwargs) -> LocalRunResult:
        emu.reset()
        result = run_in(emu, url or database, {"name": "items", **(request or {})}, **kwargs)
        captured = capfd.readouterr()
        evidence = (
            json.dumps(
                [
                    result.execution.history,
                    result.execution.output,
                    result.notifications,
                    result.task_logs,
                    result.execution.cause,
                ],
                default=str,
            )
            + captured.out
            + captured.err
        )
        assert BACKUP_PASSWORD not in evidence
        return result

    return go


# A format-2 backup of the small sample: its two pg_dump archives, its roles, the manifest.
BACKUP = ["data.dump.zst", "manifest.json", "roles.json.zst", "schema.dump.zst"]


def suffixes(result: LocalRunResult) -> list[str]:
    return sorted(key.rsplit("-", 1)[-1].split(".", 1)[-1] for key in result.objects)


def lambda_attempts(result: LocalRunResult, state: str) -> int:
    count, current = 0, None
    for event in result.execution.history:
        if event["type"].endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
        if event["type"] == "LambdaFunctionScheduled" and current == state:
            count += 1
    return count


def test_happy_path_with_verify(run) -> None:
    result = run({"verify": True})
    assert result.execution.status == "SUCCEEDED"
    visited = result.execution.visited
    for state in (
        "LookupSecret",
        "Preflight",
        "Dump",
        "Record",
        "Verify",
        "RecordVerify",
        "Prune",
        "ReleaseLock",
        "Notify",
        "Succeeded",
    ):
        assert state in visited
    report = result.execution.output
    assert report["status"] == "SUCCEEDED"
    assert report["dump"]["total_rows"] == 2500 and report["verify"]["verdict"] == "passed"
    # The real verify result comes back: the verified key and the measured recovery time.
    assert report["verify"]["verified_key"] == report["dump"]["dump_key"]
    assert report["verify"]["restore_seconds"] > 0
    assert "recovery time" in result.notifications[0]["message"]
    assert suffixes(result) == sorted([*BACKUP, "verified.json"])  # lock released
    stem = report["dump"]["manifest_key"].removesuffix(".manifest.json")
    stored = sum(size for key, size in result.objects.items() if key.endswith(".zst"))
    assert report["dump"]["stored_bytes"] == stored and report["dump"]["dump_key"].startswith(stem)
    assert [n["subject"] for n in result.notifications] == ["pgautodumper backup items succeeded"]


# Where each state writes, and the contract model its result must parse as.
EDGE_MODELS = {
    "target": contract.ConnectionTarget,
    "preflight": contract.PreflightResult,
    "dump": contract.DumpResult,
    "verify": contract.VerifyResult,
    "prune": contract.PruneResult,
    "lock": contract.LockRelease,
    "report": contract.RunReport,
    "error": contract.FailureInfo,
    "prune_error": contract.FailureInfo,
}


def assert_every_edge_parses(result: LocalRunResult) -> set[str]:
    """Every Lambda input and every state's output parses as the contract says:
    the request until Normalize, the execution document after it (each
    ResultPath as its model), the RunReport at the end. Returns the paths seen."""
    seen: set[str] = set()
    for event in result.execution.history:
        if event["type"] == "LambdaFunctionScheduled":
            inp = json.loads(event["lambdaFunctionScheduledEventDetails"]["input"])
            contract.ExecutionDocument.model_validate(inp)
        if not event["type"].endswith("StateExited"):
            continue
        details = event["stateExitedEventDetails"]
        output = json.loads(details["output"])
        if details["name"] == "ApplyDefaults":
            contract.BackupRequest.model_validate(output)
        elif details["name"] in ("Succeeded", "Skipped"):
            contract.RunReport.model_validate(output)
        else:
            contract.ExecutionDocument.model_validate(output)
            for path, model in EDGE_MODELS.items():
                if output.get(path) is not None:
                    model.model_validate(output[path])
                    seen.add(path)
    return seen


def test_every_edge_of_the_history_parses_as_its_model(run) -> None:
    happy = assert_every_edge_parses(run({"verify": True}))
    assert {"target", "preflight", "dump", "verify", "prune", "lock", "report"} <= happy
    failed = assert_every_edge_parses(run({"verify": False}, scenario="AuthFailure"))
    assert {"target", "error", "report"} <= failed
    warned = assert_every_edge_parses(run({"verify": False}, scenario="PruneFailure"))
    assert "prune_error" in warned


def test_happy_path_without_verify_and_no_success_notification(run) -> None:
    result = run({"verify": False, "notify_on_success": False})
    assert result.execution.status == "SUCCEEDED"
    assert "SkipVerify" in result.execution.visited
    assert "Verify" not in result.execution.visited
    assert result.execution.output["verify"]["verdict"] == "skipped"
    assert suffixes(result) == BACKUP
    assert result.notifications == []


def test_transient_preflight_failure_is_retried_then_succeeds(run) -> None:
    result = run({"verify": False}, scenario="PreflightTransientFailure")
    assert result.execution.status == "SUCCEEDED"
    failures = [e for e in result.execution.history if e["type"] == "TaskFailed"]
    assert [e["taskFailedEventDetails"]["error"] for e in failures] == ["PreflightConnectionError"]
    assert lambda_attempts(result, "Preflight") == 2  # the mocked attempt, then a real one
    assert suffixes(result) == BACKUP


def test_auth_failure_is_not_retried_notifies_and_fails(emu, make_database, capfd) -> None:
    url = make_database(SAMPLE).replace(BACKUP_PASSWORD, "wrong-password")
    emu.reset()
    result = run_in(emu, url, {"name": "items", "verify": False})
    assert BACKUP_PASSWORD not in capfd.readouterr().out
    assert result.execution.status == "FAILED"
    assert result.execution.error == "PreflightAuthError"
    assert lambda_attempts(result, "Preflight") == 1
    assert result.execution.visited[-3:] == ["NotifyFailure", "ReleaseLockAfterFailure", "Failed"]
    assert "FAILED: PreflightAuthError" in result.notifications[0]["subject"]
    assert result.objects == {}


def test_dump_timeout_drill_is_reported_as_a_task_timeout(run) -> None:
    result = run({"verify": False}, scenario="DumpTimeout")
    assert result.execution.status == "FAILED"
    assert result.execution.error == "TaskTimeoutError"
    assert "task.timeout_seconds (21600 s)" in json.loads(result.execution.cause)["errorMessage"]
    assert "ReleaseLockAfterFailure" in result.execution.visited
    assert not any(key.endswith(".lock") for key in result.objects)
    assert "FAILED: TaskTimeoutError" in result.notifications[0]["subject"]
    assert TaskTimeoutError.next_step in result.notifications[0]["message"]


def test_verify_exit_52_without_an_outcome_is_named_by_its_exit_code(run) -> None:
    # The drill fails the Verify state as ECS would, without running the task: no verdict,
    # no outcome document; the exit code alone names the error.
    result = run({"verify": True}, scenario="VerifyMismatch")
    assert result.execution.status == "FAILED"
    assert result.execution.error == "VerifyMismatchError"
    assert "exited with code 52" in json.loads(result.execution.cause)["errorMessage"]
    assert "Prune" not in result.execution.visited
    assert not any(key.endswith(".verified.json") for key in result.objects)
    assert "FAILED: VerifyMismatchError" in result.notifications[0]["subject"]


def test_prune_failure_succeeds_with_a_warning(run) -> None:
    result = run({"verify": False, "notify_on_success": False}, scenario="PruneFailure")
    assert result.execution.status == "SUCCEEDED"
    report = result.execution.output
    assert report["status"] == "SUCCEEDED_WITH_WARNINGS"
    assert any("pruning failed" in warning for warning in report["warnings"])
    assert "ReleaseLock" in result.execution.visited
    assert len(result.notifications) == 1  # a warning is always sent
    assert "warnings" in result.notifications[0]["subject"]


def test_lock_held_by_a_running_execution_is_a_clear_skip(run, emu: Emulator) -> None:
    holder: dict[str, str] = {}

    def hold_lock(stack) -> None:
        sfn = emu.client("stepfunctions")
        waiting = sfn.create_state_machine(
            name="holder",
            roleArn="arn:aws:iam::123456789012:role/x",
            definition=json.dumps(
                {"StartAt": "W", "States": {"W": {"Type": "Wait", "Seconds": 600, "End": True}}}
            ),
        )["stateMachineArn"]
        holder["arn"] = sfn.start_execution(stateMachineArn=waiting)["executionArn"]
        body = {"execution_arn": holder["arn"], "acquired_at": datetime.now(UTC).isoformat()}
        emu.client("s3").put_object(Bucket=stack.bucket, Key="items/.lock", Body=json.dumps(body))
        holder["body"] = json.dumps(body)

    result = run({"verify": False}, before_start=hold_lock)
    emu.client("stepfunctions").stop_execution(executionArn=holder["arn"])
    assert result.execution.status == "SUCCEEDED"
    assert result.execution.output["status"] == "SKIPPED"
    assert result.execution.visited[-3:] == ["NotifySkipped", "SkipReport", "Skipped"]
    assert "ReleaseLock" not in result.execution.visited
    assert "Dump" not in result.execution.visited
    lock = emu.client("s3").get_object(Bucket=result.stack.bucket, Key="items/.lock")
    assert lock["Body"].read().decode() == holder["body"]  # untouched
    assert "BackupAlreadyRunningError" in result.notifications[0]["subject"]


def test_verify_only_mode_verifies_the_newest_backup_without_dumping(run, emu) -> None:
    backup = run({"verify": False, "notify_on_success": False})
    stack = backup.stack
    request = stack.request("items", mode="verify", sslmode="disable", notify_on_success=True)
    result = emu.run_execution(stack.state_machine_arn, request)
    assert result.status == "SUCCEEDED", result.cause
    visited = result.visited
    assert {"Verify", "RecordVerify", "Notify"} <= set(visited)
    assert not {"Dump", "Record", "Prune"} & set(visited)
    report = result.output
    assert report["verify"]["verdict"] == "passed"
    assert report["verify"]["verified_key"] == backup.execution.output["dump"]["dump_key"]
    keys = {o["Key"] for o in emu.client("s3").list_objects_v2(Bucket=stack.bucket)["Contents"]}
    assert not any(key.endswith(".lock") for key in keys)  # no lock taken, none left
    assert sum(key.endswith(".manifest.json") for key in keys) == 1  # no new backup
