"""Notify: tell a human what happened to a backup run — SNS always, Slack when set up.

The execution document becomes a :class:`RunReport` (failed, succeeded with
warnings, or succeeded), rendered twice: an SNS subject (at most 99
characters, SNS's limit) and plain-text body, and a Slack Block Kit message.
Both say which backup, which state failed, the classified error, its cause,
a link to the execution in the console and what to do next.

SNS is published first and always. Slack (an incoming webhook whose URL lives
in Secrets Manager) is best effort: a timeout or an error is retried, then
logged and recorded in the report's warnings, never raised — a Slack outage
must not hide the failure being reported. Successes are only sent when the
request asked for ``notify_on_success``; a success with warnings (a failed
prune, a size anomaly) is always sent.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from pgautodumper import aws, errors
from pgautodumper.contract import (
    ExecutionDocument,
    FailureInfo,
    RunReport,
    VerifyResult,
    scratch_lacks,
)
from pgautodumper.errors import (
    BackupAlreadyRunningError,
    NotificationError,
    SecretMalformedError,
    UsageError,
    redact,
)

log = logging.getLogger(__name__)

TOPIC_ENV = "PGAUTODUMPER_SNS_TOPIC_ARN"
SLACK_SECRET_ENV = "PGAUTODUMPER_SLACK_WEBHOOK_SECRET_ARN"
SLACK_TIMEOUT_ENV = "PGAUTODUMPER_SLACK_TIMEOUT_SECONDS"
DASHBOARD_ENV = "PGAUTODUMPER_DASHBOARD_URL"
SUBJECT_LIMIT = 99  # SNS: "less than 100 characters"
CAUSE_LIMIT = 2500  # keeps a Slack section under its 3,000-character limit

# -- the report ---------------------------------------------------------------


def console_url(execution_arn: str | None) -> str | None:
    """The Step Functions console page of an execution ARN."""
    if not execution_arn or not execution_arn.startswith("arn:"):
        return None
    parts = execution_arn.split(":")
    if len(parts) < 8 or parts[2] != "states":
        return None
    region = parts[3]
    domain = "amazonaws.cn" if parts[1] == "aws-cn" else "aws.amazon.com"
    return (
        f"https://{region}.console.{domain}/states/home?region={region}"
        f"#/v2/executions/details/{execution_arn}"
    )


def describe_cause(failure: FailureInfo) -> str:
    """The useful part of a Step Functions cause: a Lambda's message, an ECS stop reason."""
    parsed = failure.cause_json
    text = failure.cause
    if failure.message:  # named by ExplainDumpFailure / ExplainVerifyFailure
        text = failure.message
    elif isinstance(parsed, dict):
        if "errorMessage" in parsed:  # a Lambda's exception
            text = str(parsed["errorMessage"])
        elif "StoppedReason" in parsed or "Containers" in parsed:  # an ECS task
            codes = [
                f"{c.get('Name', 'container')} exit code {c.get('ExitCode', '?')}"
                + (f" ({c['Reason']})" if c.get("Reason") else "")
                for c in parsed.get("Containers", [])
            ]
            text = "; ".join([f"task stopped: {parsed.get('StoppedReason', '?')}", *codes])
    text = redact(text).strip()
    return text if len(text) <= CAUSE_LIMIT else text[:CAUSE_LIMIT] + " [...]"


def build_report(document: ExecutionDocument) -> RunReport:
    request = document.request
    warnings = list(document.preflight.warnings) if document.preflight else []
    status = "SUCCEEDED"
    if document.prune_error is not None:
        status = "SUCCEEDED_WITH_WARNINGS"
        warnings.append(
            f"pruning failed ({document.prune_error.error}): {describe_cause(document.prune_error)}"
        )
    if document.dump is not None and document.dump.size_anomaly:
        status = "SUCCEEDED_WITH_WARNINGS"
        warnings.append(
            f"size anomaly: {document.dump.stored_bytes} bytes stored, the previous backup "
            f"had {document.dump.previous_stored_bytes}"
        )
    if document.verify is not None and document.verify.verdict == "warn":
        status = "SUCCEEDED_WITH_WARNINGS"
        warnings.append(
            "verify could not check "
            f"{', '.join(document.verify.unchecked_tables) or 'every object'}: the scratch "
            "server lacks "
            + scratch_lacks(document.verify.missing_extensions, document.verify.missing_collations)
        )
    error = document.error
    if error is not None:
        # A run that found another one holding the lock is a skip, not a failure.
        status = "SKIPPED" if error.error == BackupAlreadyRunningError.__name__ else "FAILED"
        # The report is stored in the execution history: never a password, even one a
        # careless upstream message carried.
        error = error.model_copy(
            update={
                "cause": redact(error.cause),
                "message": redact(error.message) if error.message else None,
                "state": error.state or failed_state(document),
                "next_step": error.next_step or errors.next_step_for(error.error),
            }
        )
    arn = document.execution.id if document.execution else None
    return RunReport(
        status=status,
        name=request.name,
        execution_arn=arn,
        console_url=console_url(arn),
        dashboard_url=os.environ.get(DASHBOARD_ENV) or None,
        dump=document.dump,
        verify=document.verify,
        prune=document.prune,
        error=error,
        warnings=warnings,
    )


def should_notify(report: RunReport, *, notify_on_success: bool) -> bool:
    return report.status != "SUCCEEDED" or notify_on_success


# -- rendering ----------------------------------------------------------------

_HEADLINES = {
    "FAILED": "FAILED",
    "SUCCEEDED_WITH_WARNINGS": "succeeded with warnings",
    "SUCCEEDED": "succeeded",
    "SKIPPED": "skipped",
}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def render_subject(report: RunReport) -> str:
    """ASCII, one line, under SNS's 100-character limit."""
    detail = f": {report.error.error}" if report.error else ""
    subject = _one_line(f"pgautodumper backup {report.name} {_HEADLINES[report.status]}{detail}")
    subject = subject.encode("ascii", "replace").decode()
    return subject if len(subject) <= SUBJECT_LIMIT else subject[: SUBJECT_LIMIT - 3] + "..."


# The states in the order they write their results: the first result missing is where
# a run stopped (the ExplainDumpFailure / ExplainVerifyFailure states name theirs).
_RESULTS = (
    ("target", "LookupSecret"),
    ("preflight", "Preflight"),
    ("dump_task", "Dump"),
    ("dump", "Record"),
    ("verify_task", "Verify"),
    ("verify", "RecordVerify"),
)


def failed_state(document: ExecutionDocument) -> str:
    """The state a failed run stopped in, read from which results its document holds."""
    for part, state in _RESULTS:
        if part == "verify_task" and not document.request.verify:
            continue
        if getattr(document, part) is None:
            return state
    return "ReleaseLock"


def next_step(report: RunReport) -> str | None:
    if report.error is not None:
        return report.error.next_step or errors.next_step_for(report.error.error)
    if report.warnings:
        return "The backup is stored; look into the warnings above before the next run."
    return None


def _size(value: int) -> str:
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if amount < 1024 or unit == "TiB":
            return f"{amount:.1f} {unit}" if unit != "B" else f"{value} B"
        amount /= 1024
    raise AssertionError("unreachable")


def _verify_lines(verify: VerifyResult) -> list[str]:
    lines = [f"Verify: {verify.verdict}"]
    if verify.restore_seconds is not None:
        lines[0] += (
            f", recovery time {verify.restore_seconds:.1f} s (restore into a scratch server)"
        )
    if verify.verified_key:
        lines.append(f"Verified: {verify.verified_key}")
    if verify.mismatched_tables:
        lines.append(f"Mismatched tables: {', '.join(verify.mismatched_tables)}")
    if verify.reason and verify.verdict != "passed":
        lines.append(f"Verify reason: {verify.reason}")
    return lines


def _summary_lines(report: RunReport) -> list[str]:
    lines = []
    if report.dump:
        d = report.dump
        lines.append(
            f"Stored: {_size(d.stored_bytes)} ({_size(d.raw_bytes)} raw), {d.tables} tables, "
            f"{d.total_rows} rows, {d.duration_seconds:.0f} s"
        )
        lines.append(f"Key: {d.dump_key}")
    if report.verify:
        lines += _verify_lines(report.verify)
    if report.prune:
        p = report.prune
        lines.append(
            f"Retention: {len(p.kept)} kept, {len(p.deleted)} deleted, "
            f"{len(p.incomplete_deleted)} leftovers removed, {len(p.locked)} under Object Lock"
        )
    return lines


def render_body(report: RunReport) -> str:
    lines = [f"Backup: {report.name}", f"Status: {report.status}"]
    if report.error is not None:
        lines += [
            f"Failed state: {report.error.state or '-'}",
            f"Error: {report.error.error}",
            f"Message: {describe_cause(report.error)}",
        ]
        if report.error.exit_code is not None:
            lines.append(f"Exit code: {report.error.exit_code}")
        if report.error.log_url:
            lines.append(f"Task log: {report.error.log_url}")
    lines += _summary_lines(report)
    lines += [f"Warning: {w}" for w in report.warnings]
    if step := next_step(report):
        lines.append(f"Next steps: {step}")
    if report.execution_arn:
        lines.append(f"Execution: {report.execution_arn}")
    if report.console_url:
        lines.append(f"Console: {report.console_url}")
    if report.dashboard_url:
        lines.append(f"Dashboard: {report.dashboard_url}")
    return "\n".join(lines) + "\n"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}


def render_slack(report: RunReport) -> dict[str, Any]:
    """A Block Kit message for an incoming webhook (``text`` is the notification fallback)."""
    icon = {"FAILED": ":red_circle:", "SUCCEEDED": ":large_green_circle:"}.get(
        report.status, ":warning:"
    )
    fields = [f"*Backup*\n{report.name}", f"*Status*\n{report.status}"]
    if report.error is not None:
        fields += [
            f"*Failed state*\n{report.error.state or '-'}",
            f"*Error*\n`{report.error.error}`",
        ]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": render_subject(report)[:150]}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f} for f in fields]},
    ]
    if report.error is not None:
        blocks.append(_section(f"*Message*\n```{describe_cause(report.error)}```"))
        if report.error.log_url:
            blocks.append(_section(f"*Task log*\n<{report.error.log_url}|CloudWatch Logs>"))
    if summary := _summary_lines(report):
        blocks.append(_section("\n".join(summary)))
    if report.warnings:
        blocks.append(_section("\n".join(f":warning: {w}" for w in report.warnings)))
    if step := next_step(report):
        blocks.append(_section(f"*Next steps*\n{step}"))
    buttons = [
        {"type": "button", "text": {"type": "plain_text", "text": text}, "url": url}
        for text, url in (
            ("Open the execution", report.console_url),
            ("Open the dashboard", report.dashboard_url),
        )
        if url
    ]
    if buttons:
        blocks.append({"type": "actions", "elements": buttons})
    return {"text": f"{icon} {render_subject(report)}", "blocks": blocks}


# -- sending ------------------------------------------------------------------


def publish_sns(topic_arn: str, report: RunReport) -> str:
    try:
        response = aws.client("sns").publish(
            TopicArn=topic_arn, Subject=render_subject(report), Message=render_body(report)
        )
    except (ClientError, BotoCoreError) as exc:
        code = aws.error_code(exc) or str(exc)
        raise NotificationError(
            f"cannot publish the {report.status} notification of {report.name!r} "
            f"to {topic_arn}: {code}",
            hint="check the topic ARN and that the role may sns:Publish to it",
        ) from None
    return str(response["MessageId"])


def slack_webhook_url(secret_arn: str) -> str:
    """The webhook URL, stored as the secret string itself or as JSON {"url": ...}."""
    try:
        raw = aws.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    except (ClientError, BotoCoreError, KeyError) as exc:
        raise NotificationError(
            f"cannot read the Slack webhook secret {secret_arn}: {aws.error_code(exc) or exc}",
            hint="check the ARN and secretsmanager:GetSecretValue for the notify role",
        ) from None
    url = raw.strip()
    if url.startswith("{"):
        try:
            document = json.loads(url)
        except ValueError:
            document = {}
        url = str(document.get("url") or document.get("webhook_url") or "")
    if urlsplit(url).scheme not in ("http", "https"):
        raise SecretMalformedError(
            f"Slack webhook secret {secret_arn} holds no URL",
            hint='store the webhook URL itself, or {"url": "https://hooks.slack.com/..."}',
        )
    return url


class SlackDelivery(BaseModel):
    delivered: bool
    attempts: int
    error: str | None = None


def post_slack(
    url: str, payload: dict[str, Any], *, timeout: float = 5.0, attempts: int = 3
) -> SlackDelivery:
    """POST the payload; retried on timeouts, connection errors, 429 and 5xx. Never raises."""
    body = json.dumps(payload).encode()
    host = urlsplit(url).hostname  # the URL path is the credential: never logged
    error = "not attempted"
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            return SlackDelivery(delivered=True, attempts=attempt)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code}"
            if exc.code < 500 and exc.code != 429:
                break
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            error = f"{type(reason).__name__}: {reason}"
        log.warning(
            "Slack webhook on %s failed (attempt %d/%d): %s", host, attempt, attempts, error
        )
        if attempt < attempts:
            time.sleep(min(0.5 * attempt, 2.0))
    return SlackDelivery(delivered=False, attempts=attempt, error=error)


def send(
    report: RunReport, *, topic_arn: str, slack_secret_arn: str | None, slack_timeout: float = 5.0
) -> RunReport:
    """SNS first (raises :class:`NotificationError` after trying Slack), then Slack."""
    sns_error: NotificationError | None = None
    try:
        publish_sns(topic_arn, report)
    except NotificationError as exc:
        sns_error = exc
        log.error("%s", exc)
    warnings = list(report.warnings)
    if slack_secret_arn:
        try:
            delivery = post_slack(
                slack_webhook_url(slack_secret_arn), render_slack(report), timeout=slack_timeout
            )
            if not delivery.delivered:
                warnings.append(f"Slack notification failed: {delivery.error}")
        except (NotificationError, SecretMalformedError) as exc:
            log.error("Slack notification skipped: %s", exc)
            warnings.append(f"Slack notification skipped: {exc.message}")
    if sns_error is not None:
        raise sns_error
    return report.model_copy(update={"warnings": warnings})


def emit_failure_metric(metrics: Metrics, report: RunReport) -> None:
    """``BackupFailed`` by name and error: the dashboard's "failures by error name"."""
    if report.status != "FAILED" or report.error is None:
        return
    metrics.add_dimension(name="Name", value=report.name)
    metrics.add_dimension(name="Error", value=report.error.error)
    metrics.add_metric(name="BackupFailed", unit=MetricUnit.Count, value=1)


def run(document: ExecutionDocument, metrics: Metrics) -> RunReport:
    """The Notify Lambda: build the report, send it when it should be sent, return it."""
    report = build_report(document)
    emit_failure_metric(metrics, report)
    if not should_notify(report, notify_on_success=document.request.notify_on_success):
        return report
    topic_arn = os.environ.get(TOPIC_ENV)
    if not topic_arn:
        raise UsageError(f"{TOPIC_ENV} is not set", hint="set it to the notification topic ARN")
    timeout = float(os.environ.get(SLACK_TIMEOUT_ENV) or 5.0)
    return send(
        report,
        topic_arn=topic_arn,
        slack_secret_arn=os.environ.get(SLACK_SECRET_ENV) or None,
        slack_timeout=timeout,
    )
