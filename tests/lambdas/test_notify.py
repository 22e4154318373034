"""Notify: SNS (read back through an SQS subscription) and a real HTTP Slack webhook."""

from __future__ import annotations

import json

import pytest

from lambdas import notify as notify_lambda
from pgautodumper.contract import RunReport
from pgautodumper.errors import LockTimeoutError, NotificationError
from pgautodumper.notify import render_subject
from tests.conftest import BACKUP_PASSWORD
from tests.lambdas.conftest import emf_records, execution_document

EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:pgautodumper-backup:run-42"
LAMBDA_CAUSE = json.dumps(
    {
        "errorType": "PreflightPermissionError",
        "errorMessage": "role 'backup' cannot read 1 object(s) in db:5432/app, so pg_dump "
        "would fail: table public.payroll",
        "stackTrace": ['  File "/var/task/lambdas/preflight.py", line 15'],
    }
)


TARGET = {
    "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
    "secret_version_id": "v1",
    "host": "db",
    "port": 5432,
    "dbname": "app",
    "user": "backup",
}


DASHBOARD = "https://eu-west-1.console.aws.amazon.com/cloudwatch/home#dashboards/dashboard/pgad"


def failure(**over) -> dict:
    return execution_document(
        **{
            "name": "app",
            "secret_arn": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db",
            "bucket": "b",
            "execution": {"id": EXECUTION, "name": "run-42", "start_time": "2024-05-06T03:00:00Z"},
            "target": TARGET,
            "error": {"Error": "PreflightPermissionError", "Cause": LAMBDA_CAUSE},
            **over,
        }
    )


def success(**over) -> dict:
    document = failure(**over)
    document.pop("error")
    return document


@pytest.fixture
def configured(monkeypatch, topic, make_secret, slack):
    """Topic + Slack webhook secret in the environment; returns (topic, slack server)."""

    def configure(mode: str = "ok", timeout: str = "0.5"):
        server = slack(mode)
        secret = make_secret({"url": server.url})
        monkeypatch.setenv("PGAUTODUMPER_SNS_TOPIC_ARN", topic.arn)
        monkeypatch.setenv("PGAUTODUMPER_SLACK_WEBHOOK_SECRET_ARN", secret)
        monkeypatch.setenv("PGAUTODUMPER_SLACK_TIMEOUT_SECONDS", timeout)
        monkeypatch.setenv("PGAUTODUMPER_DASHBOARD_URL", DASHBOARD)
        return topic, server

    return configure


def test_failure_reaches_sns_and_slack(leaks, configured):
    topic, server = configured()
    output = leaks.invoke(notify_lambda.handler, failure())

    report = RunReport.model_validate(output)
    assert report.status == "FAILED" and report.warnings == []
    [delivery] = topic.messages()
    assert delivery["Subject"] == "pgautodumper backup app FAILED: PreflightPermissionError"
    body = delivery["Message"]
    for expected in (
        "Backup: app",
        "Failed state: Preflight",
        "Error: PreflightPermissionError",
        "Message: role 'backup' cannot read 1 object(s)",
        "table public.payroll",
        "Next steps: Grant the backup role SELECT",
        "https://eu-west-1.console.aws.amazon.com/states/home?region=eu-west-1"
        f"#/v2/executions/details/{EXECUTION}",
        f"Dashboard: {DASHBOARD}",
    ):
        assert expected in body
    assert "stackTrace" not in body

    [post] = server.requests
    assert post["path"].startswith("/services/T0/B0/")
    message = post["body"]
    assert "PreflightPermissionError" in message["text"]
    kinds = [block["type"] for block in message["blocks"]]
    assert kinds[:2] == ["header", "section"] and kinds[-1] == "actions"
    assert message["blocks"][-1]["elements"][0]["url"] == report.console_url
    assert message["blocks"][-1]["elements"][1]["url"] == DASHBOARD
    assert any("table public.payroll" in json.dumps(b) for b in message["blocks"])

    printed = leaks.read()
    assert server.url not in printed, "the webhook URL is a credential"


def test_slack_answering_500_is_retried_and_sns_still_published(leaks, configured):
    topic, server = configured("error")
    report = RunReport.model_validate(leaks.invoke(notify_lambda.handler, failure()))

    assert len(server.requests) == 3, "one try and two retries"
    assert report.warnings == ["Slack notification failed: HTTP 500"]
    assert report.status == "FAILED" and report.error.error == "PreflightPermissionError"
    [delivery] = topic.messages()
    assert "PreflightPermissionError" in delivery["Subject"]
    assert "HTTP 500" in leaks.read()


def test_slack_that_hangs_times_out_and_sns_still_published(leaks, configured):
    topic, server = configured("hang", timeout="0.3")
    report = RunReport.model_validate(leaks.invoke(notify_lambda.handler, failure()))

    assert len(server.requests) == 3
    assert report.warnings and "Slack notification failed" in report.warnings[0]
    assert "timed out" in report.warnings[0]
    assert len(topic.messages()) == 1


def test_unreachable_slack_is_only_a_warning(leaks, configured, monkeypatch, make_secret):
    from pgautodumper.scratch import free_port

    topic, _ = configured()
    dead = make_secret(f"http://127.0.0.1:{free_port()}/services/x")
    monkeypatch.setenv("PGAUTODUMPER_SLACK_WEBHOOK_SECRET_ARN", dead)
    report = RunReport.model_validate(leaks.invoke(notify_lambda.handler, failure()))
    assert "Slack notification failed" in report.warnings[0]
    assert len(topic.messages()) == 1


def test_success_is_silent_unless_asked(leaks, configured):
    topic, server = configured()
    report = RunReport.model_validate(leaks.invoke(notify_lambda.handler, success()))
    assert report.status == "SUCCEEDED"
    assert topic.messages(wait=1) == [] and server.requests == []

    leaks.invoke(notify_lambda.handler, success(notify_on_success=True))
    [delivery] = topic.messages()
    assert delivery["Subject"] == "pgautodumper backup app succeeded"
    assert len(server.requests) == 1


def test_failed_prune_is_success_with_warnings_and_always_notifies(leaks, configured):
    topic, _ = configured()
    prune_error = {"Error": "StorageAccessDeniedError", "Cause": "delete s3://b/k: access denied"}
    dump = {
        "dump_key": "app/2024/05/06/x.dump.zst", "manifest_key": "app/2024/05/06/x.manifest.json",
        "stored_bytes": 1000, "raw_bytes": 5000, "sha256": "0" * 64, "duration_seconds": 3.0,
        "throughput_bytes_per_second": 1666.0, "tables": 4, "total_rows": 99,
        "previous_stored_bytes": 5000, "size_anomaly": True,
    }  # fmt: skip
    report = RunReport.model_validate(
        leaks.invoke(notify_lambda.handler, success(prune_error=prune_error, dump=dump))
    )
    assert report.status == "SUCCEEDED_WITH_WARNINGS"
    assert report.warnings[0].startswith("pruning failed (StorageAccessDeniedError)")
    assert "size anomaly" in report.warnings[1]
    [delivery] = topic.messages()
    assert delivery["Subject"] == "pgautodumper backup app succeeded with warnings"
    assert "Warning: pruning failed" in delivery["Message"]
    assert "Stored: 1000 B (4.9 KiB raw), 4 tables, 99 rows" in delivery["Message"]


def test_ecs_task_failure_cause_is_summarised(leaks, configured):
    topic, _ = configured()
    cause = json.dumps(
        {
            "StoppedReason": "Essential container in task exited",
            "Containers": [{"Name": "pgautodumper", "ExitCode": 21}],
            "TaskArn": "arn:aws:ecs:eu-west-1:123456789012:task/c/abc",
        }
    )
    leaks.invoke(
        notify_lambda.handler,
        failure(error={"Error": "States.TaskFailed", "Cause": cause, "state": "Dump"}),
    )
    body = topic.messages()[0]["Message"]
    assert (
        "Message: task stopped: Essential container in task exited; pgautodumper exit code 21"
        in body
    )
    assert "Next steps: The task failed: read its log" in body


def test_sns_failure_raises_but_slack_is_still_tried(leaks, configured, monkeypatch):
    _, server = configured()
    missing = "arn:aws:sns:us-east-1:123456789012:no-such-topic"
    monkeypatch.setenv("PGAUTODUMPER_SNS_TOPIC_ARN", missing)
    with pytest.raises(NotificationError, match="no-such-topic"):
        leaks.invoke(notify_lambda.handler, failure())
    assert len(server.requests) == 1


def test_causes_are_redacted_and_subjects_fit_sns(leaks, configured):
    topic, server = configured()
    leaky = f"could not connect to postgresql://backup:{BACKUP_PASSWORD}@db/app"
    long_error = "E" * 300
    event = failure(error={"Error": long_error, "Cause": leaky})
    report = leaks.invoke(notify_lambda.handler, event, scan_event=False)
    [delivery] = topic.messages()
    assert len(delivery["Subject"]) <= 99 and delivery["Subject"].endswith("...")
    assert "postgresql://backup:***@db/app" in delivery["Message"]
    assert BACKUP_PASSWORD not in json.dumps(server.requests)
    assert report["error"]["cause"] == "could not connect to postgresql://backup:***@db/app"


def test_subject_is_one_ascii_line():
    report = RunReport(status="FAILED", name="app", error={"Error": "Bad\nName ✓", "Cause": ""})
    subject = render_subject(report)
    assert "\n" not in subject and subject.isascii()


def test_a_named_task_failure_shows_message_next_step_exit_code_and_log(leaks, configured):
    topic, server = configured()
    log_url = "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#x"
    named = {
        "Error": "LockTimeoutError",
        "Cause": json.dumps({"errorType": "LockTimeoutError", "errorMessage": "locked"}),
        "state": "Dump",
        "message": "table public.orders stayed locked for 300 s by pid 42 (migrate)",
        "next_step": LockTimeoutError.next_step,
        "log_url": log_url,
        "exit_code": 15,
    }
    output = leaks.invoke(notify_lambda.handler, failure(error=named))
    body = topic.messages()[0]["Message"]
    for expected in (
        "Failed state: Dump",
        "Error: LockTimeoutError",
        "Message: table public.orders stayed locked for 300 s by pid 42 (migrate)",
        "Exit code: 15",
        f"Task log: {log_url}",
        f"Next steps: {LockTimeoutError.next_step}",
    ):
        assert expected in body
    assert log_url in json.dumps(server.requests[0]["body"])
    [emf] = emf_records(leaks.read())
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Name", "Error"]]
    assert (emf["Name"], emf["Error"], emf["BackupFailed"]) == ("app", "LockTimeoutError", [1.0])
    assert RunReport.model_validate(output).error.next_step == LockTimeoutError.next_step


def test_a_verified_success_shows_the_recovery_time(leaks, configured):
    topic, _ = configured()
    verify = {
        "verdict": "passed",
        "verified_key": "app/2024/05/06/x.dump.zst",
        "restore_seconds": 12.34,
        "mismatched_tables": [],
    }
    document = success(notify_on_success=True)
    document["verify"] = verify  # the result, beside the request's own "verify" flag
    leaks.invoke(notify_lambda.handler, document)
    body = topic.messages()[0]["Message"]
    assert "Verify: passed, recovery time 12.3 s" in body
    assert "Verified: app/2024/05/06/x.dump.zst" in body
    assert emf_records(leaks.read()) == [], "a success is not a BackupFailed"


def test_failed_state_is_inferred_when_the_catch_did_not_record_it(leaks, configured):
    topic, _ = configured()
    error = {"Error": "SecretMalformedError", "Cause": "secret x lacks required key(s): host"}
    leaks.invoke(notify_lambda.handler, failure(error=error, target=None))
    assert "Failed state: LookupSecret" in topic.messages()[0]["Message"]


def test_a_run_that_found_the_lock_held_is_reported_as_skipped(leaks, configured):
    topic, _ = configured()
    held = {
        "Error": "BackupAlreadyRunningError",
        "Cause": "lock held by run-41",
        "state": "Preflight",
    }
    output = leaks.invoke(notify_lambda.handler, failure(error=held))

    assert RunReport.model_validate(output).status == "SKIPPED"
    [delivery] = topic.messages()
    assert "FAILED" not in delivery["Subject"]
