"""pgautodumper local-run: the real workflow, end to end, on this machine."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from pgautodumper.cli.options import human_bytes
from pgautodumper.contract import BackupRequest, parse_model
from pgautodumper.errors import UsageError
from pgautodumper.local.emulator import Emulator, Transition
from pgautodumper.local.run import LOCAL_REQUEST_DEFAULTS, LocalRunResult, run_in, sample_database


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """The Lambdas' log and metric lines (stdout in AWS) go to stderr: stdout is the report."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# Without --verbose the live view is the state transitions; the Lambdas' JSON
# log lines and EMF metric blobs would bury them.
_QUIET_LAMBDAS = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


def _print_transition(transition: Transition) -> None:
    if transition.kind == "entered":
        click.echo(f"  → {transition.state}", err=True)
    elif transition.kind == "failed":
        click.echo(f"    ✗ {transition.detail}", err=True)
    elif transition.kind.startswith("Execution"):
        click.echo(f"  {transition.kind}", err=True)


def _report(result: LocalRunResult) -> dict[str, Any]:
    output = result.execution.output or {}
    return {
        "status": result.execution.status,
        "outcome": output.get("status"),
        "execution_arn": result.execution.execution_arn,
        "error": result.execution.error,
        "cause": result.execution.cause,
        "report": output,
        "notifications": result.notifications,
        "objects": result.objects,
        "seconds": round(result.seconds, 2),
    }


def _status_line(report: dict[str, Any]) -> str:
    """The execution's status, and the run's when it says more (SKIPPED, warnings, the error)."""
    detail = report["error"] or report["outcome"]
    return f"status: {report['status']}" + (
        f" ({detail})" if detail and detail != report["status"] else ""
    )


def _print_report(report: dict[str, Any]) -> None:
    run = report["report"]
    dump = run.get("dump") or {}
    lines = [_status_line(report)]
    if dump:
        lines += [
            f"backup: {dump['dump_key']}",
            f"size: {human_bytes(dump['stored_bytes'])} stored, "
            f"{human_bytes(dump['raw_bytes'])} raw",
            f"throughput: {human_bytes(dump['throughput_bytes_per_second'])}/s",
            f"sha256: {dump['sha256']}",
        ]
    if verify := run.get("verify"):
        line = f"verification: {verify['verdict']}"
        if verify.get("restore_seconds") is not None:
            line += f", recovery time {verify['restore_seconds']:.1f} s"
        lines.append(line)
        if verify.get("verified_key"):
            lines.append(f"verified: {verify['verified_key']}")
    if run.get("prune") is not None:
        lines.append(f"pruned: {', '.join(run['prune']['deleted']) or 'nothing'}")
    for warning in run.get("warnings") or []:
        lines.append(f"warning: {warning}")
    if report["error"]:
        lines.append(f"error: {report['error']}: {report['cause']}")
    lines.append(f"notifications: {len(report['notifications'])}")
    lines += [f"  - {n['subject']}" for n in report["notifications"]]
    lines.append(f"took {report['seconds']} s")
    click.echo("\n".join(lines))


def _load_request(path: Path | None, verify: bool | None) -> dict[str, Any]:
    """The request's fields: a BackupRequest file (secret and bucket may be left out)."""
    fields: dict[str, Any] = {}
    if path is not None:
        try:
            fields = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise UsageError(f"cannot read the request {path}: {exc}") from None
        if not isinstance(fields, dict):
            raise UsageError(f"the request {path} is not a JSON object (a BackupRequest)")
    if verify is not None:
        fields["verify"] = verify
    placeholders = {"secret_arn": "provided-locally", "bucket": "provided-locally"}
    parse_model(BackupRequest, {**LOCAL_REQUEST_DEFAULTS, **placeholders, **fields},
                what=f"request {path}" if path else "request")  # fmt: skip
    return fields


@click.command("local-run")
@click.option("--database-url", help="Back up this database instead of a throwaway sample.")
@click.option(
    "--request",
    "request_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A BackupRequest JSON file (what a schedule sends); secret_arn and bucket may be "
    "left out: the local runtime provides them.",
)
@click.option(
    "--verify/--no-verify",
    default=None,
    help="Run the Verify task (restore into a scratch server and compare) [default: yes, "
    "or the request's 'verify'].",
)
@click.option("--scenario", help="A MockConfigFile test case (failure drill), e.g. AuthFailure.")
@click.option(
    "--history-out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the execution history as JSON.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("-v", "--verbose", is_flag=True, help="Also show the Lambdas' logs and metrics.")
def command(
    database_url: str | None,
    request_path: Path | None,
    verify: bool | None,
    scenario: str | None,
    history_out: Path | None,
    as_json: bool,
    verbose: bool,
) -> None:
    """Run the real state machine, Lambdas and dump task locally (moto, no Docker)."""
    request = _load_request(request_path, verify)
    if not verbose:
        # The Step Functions engine logs every failure it handles; the report says it once.
        logging.getLogger("moto").setLevel(logging.CRITICAL)
    with ExitStack() as stack:
        stack.enter_context(_stdout_to_stderr())
        url = database_url or stack.enter_context(sample_database(secrets.token_urlsafe(18)))
        emu = stack.enter_context(Emulator())
        click.echo(f"emulated AWS at {emu.endpoint}; starting the execution", err=True)
        if database_url and "sslmode" not in request:
            # A throwaway server has no TLS; a real database gets the URL's sslmode or "prefer".
            request["sslmode"] = parse_qs(urlsplit(url).query).get("sslmode", ["prefer"])[0]
        result = run_in(
            emu,
            url,
            request,
            scenario=scenario,
            on_event=_print_transition,
            lambda_environment=None if verbose else _QUIET_LAMBDAS,
        )
    if history_out:
        history_out.write_text(json.dumps(result.execution.history, indent=2, default=str))
    report = _report(result)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report)
    sys.exit(0 if result.execution.status == "SUCCEEDED" else 1)
