"""pgautodumper verify: restore into a scratch database and compare.

In the Fargate task the one input is ``PGAUTODUMPER_TASK`` (its ``keys`` name
the backup); the scratch server is a throwaway PostgreSQL inside the task.
"""

from __future__ import annotations

import click

from pgautodumper import task
from pgautodumper.cli.options import bucket_options, emit, json_option
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import DatabaseUnreachableError, TaskOutOfMemoryError, UsageError
from pgautodumper.layout import BackupKeys
from pgautodumper.manifest import Verdict
from pgautodumper.restore import resolve
from pgautodumper.scratch import ThrowawayPostgres, scratch_settings, server_bin_dir
from pgautodumper.verify import scratch_name, verify


def verify_in_throwaway(bucket: str, keys: BackupKeys) -> Verdict:
    """A scratch server of our own (the Fargate task's), set up for the extensions it has."""
    database = scratch_name(keys)
    settings = scratch_settings(server_bin_dir(), database)
    with ThrowawayPostgres(settings=settings) as server:
        try:
            return verify(
                bucket, keys, ConnectionInfo.from_url(server.admin_url), database=database
            )
        except DatabaseUnreachableError:
            # The scratch server is ours: its log tells a crash's cause, which on Fargate
            # is the task's memory, and a rerun in the same task would fail the same way.
            if killed := server.killed_processes():
                raise TaskOutOfMemoryError(
                    f"the verify's scratch PostgreSQL lost a process to SIGKILL while "
                    f"restoring {keys.dump}, which ended the restore: {killed[0]} (the "
                    "out-of-memory killer picks the largest process)",
                    hint="raise task.memory in the request (or task_defaults.memory in "
                    "Terraform) for verify runs",
                ) from None
            raise


@click.command("verify")
@bucket_options(required=False)
@click.option("--key", help="The backup's .dump.zst (or .manifest.json) key.")
@click.option("--latest", is_flag=True, help="The newest complete backup of --name.")
@click.option("--name", help="Backup name, with --latest.")
@click.option("--scratch-url", help="A server where verify may create and drop databases.")
@click.option("--scratch-local", is_flag=True,
              help="Start a throwaway local PostgreSQL as the scratch server.")  # fmt: skip
@json_option
def command(
    bucket: str | None,
    prefix: str,
    key: str | None,
    latest: bool,
    name: str | None,
    scratch_url: str | None,
    scratch_local: bool,
    as_json: bool,
) -> None:
    """Prove a backup restores: row counts must equal the manifest's.

    In the Fargate task, PGAUTODUMPER_TASK (JSON) replaces the flags; a failure
    then also leaves <stem>.verify.outcome.json for the workflow to report.
    """
    task_input = task.input_from_environment()
    if task_input is not None:
        keys = task_input.keys
        verdict = task.run(
            task_input, "verify", lambda: verify_in_throwaway(task_input.bucket, keys)
        )
    else:
        if not bucket:
            raise UsageError("--bucket is required", hint="or set PGAUTODUMPER_BUCKET")
        if bool(key) == bool(latest and name):
            raise UsageError("give --key KEY, or --latest --name NAME")
        if bool(scratch_url) == scratch_local:
            raise UsageError("give --scratch-url URL or --scratch-local")
        keys = resolve(bucket, prefix, key=key, name=name)
        if scratch_local:
            verdict = verify_in_throwaway(bucket, keys)
        else:
            verdict = verify(bucket, keys, ConnectionInfo.from_url(scratch_url or ""))
    text = (
        f"verified {verdict.dump_key}: {len(verdict.tables)} tables match, "
        f"restore took {verdict.restore_seconds:.1f}s"
    )
    if verdict.verdict == "warn":
        text = f"verified {verdict.dump_key} with a warning: {verdict.reason}"
    emit(verdict, as_json, text)
