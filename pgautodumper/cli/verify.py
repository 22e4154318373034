"""pgautodumper verify: restore into a scratch database and compare."""

from __future__ import annotations

from contextlib import ExitStack

import click

from pgautodumper.cli.options import bucket_options, emit, json_option
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import UsageError
from pgautodumper.restore import resolve
from pgautodumper.verify import verify


@click.command("verify")
@bucket_options
@click.option("--key", envvar="PGAUTODUMPER_KEY", help="The backup's .dump.zst key.")
@click.option("--latest", is_flag=True, help="The newest complete backup of --name.")
@click.option("--name", help="Backup name, with --latest.")
@click.option("--scratch-url", help="A server where verify may create and drop databases.")
@click.option("--scratch-local", is_flag=True, envvar="PGAUTODUMPER_SCRATCH_LOCAL",
              help="Start a throwaway local PostgreSQL as the scratch server.")  # fmt: skip
@json_option
def command(
    bucket: str,
    prefix: str,
    key: str | None,
    latest: bool,
    name: str | None,
    scratch_url: str | None,
    scratch_local: bool,
    as_json: bool,
) -> None:
    """Prove a backup restores: row counts must equal the manifest's."""
    if bool(key) == bool(latest and name):
        raise UsageError("give --key KEY, or --latest --name NAME")
    if bool(scratch_url) == scratch_local:
        raise UsageError("give --scratch-url URL or --scratch-local")
    keys = resolve(bucket, prefix, key=key, name=name)
    with ExitStack() as stack:
        if scratch_local:
            from pgautodumper.local.postgres import ThrowawayPostgres

            scratch = ConnectionInfo.from_url(stack.enter_context(ThrowawayPostgres()).admin_url)
        else:
            scratch = ConnectionInfo.from_url(scratch_url or "")
        verdict = verify(bucket, keys, scratch)
    emit(
        verdict,
        as_json,
        f"verified {keys.dump}: {len(verdict.tables)} tables match, "
        f"restore took {verdict.restore_seconds:.1f}s",
    )
