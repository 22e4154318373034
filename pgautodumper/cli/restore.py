"""pgautodumper restore: stream a backup into a database."""

from __future__ import annotations

import click

from pgautodumper.cli.options import bucket_options, emit, json_option
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import UsageError
from pgautodumper.restore import RestoreOptions, resolve, restore


@click.command("restore")
@bucket_options
@click.option("--key", help="The backup's .dump.zst (or .manifest.json) key.")
@click.option("--latest", is_flag=True, help="The newest complete backup of --name.")
@click.option("--name", help="Backup name, with --latest.")
@click.option("--database-url", required=True, help="Target database (must exist, and be empty).")
@click.option("--clean", is_flag=True, help="Drop and replace objects that already exist.")
@click.option("--no-owner", is_flag=True, help="Do not restore ownership and privileges.")
@json_option
def command(
    bucket: str,
    prefix: str,
    key: str | None,
    latest: bool,
    name: str | None,
    database_url: str,
    clean: bool,
    no_owner: bool,
    as_json: bool,
) -> None:
    """Restore a backup, checking its sha256 while streaming."""
    if bool(key) == bool(latest and name):
        raise UsageError(
            "give --key KEY, or --latest --name NAME",
            hint="e.g. pgautodumper restore --bucket B --latest --name orders --database-url URL",
        )
    keys = resolve(bucket, prefix, key=key, name=name)
    result = restore(
        bucket,
        keys,
        ConnectionInfo.from_url(database_url),
        RestoreOptions(clean=clean, no_owner=no_owner),
    )
    emit(
        result,
        as_json,
        f"restored {result.dump_key} into {result.database} in {result.seconds:.1f}s "
        f"(sha256 {result.sha256} verified)",
    )
