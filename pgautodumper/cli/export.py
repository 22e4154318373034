"""pgautodumper export: a backup as one plain SQL script on stdout (no lock-in)."""

from __future__ import annotations

import os
import sys

import click

from pgautodumper.cli.options import bucket_options
from pgautodumper.errors import PgautodumperError, UsageError
from pgautodumper.export import export
from pgautodumper.restore import resolve


@click.command("export")
@bucket_options
@click.option("--key", help="A key of the backup (its .manifest.json, or any of its objects).")
@click.option("--latest", is_flag=True, help="The newest complete backup of --name.")
@click.option("--name", help="Backup name, with --latest.")
@click.option("--no-owner", is_flag=True, help="Leave out ownership and privileges.")
@click.option("--no-tablespaces", is_flag=True, help="Leave out tablespace assignments.")
def command(
    bucket: str,
    prefix: str,
    key: str | None,
    latest: bool,
    name: str | None,
    no_owner: bool,
    no_tablespaces: bool,
) -> None:
    """Write a backup (either format) to stdout as plain SQL, like pg_dump --format=plain.

    Load it with nothing but psql:
    pgautodumper export ... | psql -v ON_ERROR_STOP=1 --single-transaction -d NEWDB

    Every object's sha256 is checked. If one is corrupt, the output already
    written is unusable: it ends with lines that make loading it fail, and the
    command exits 50.
    """
    if bool(key) == bool(latest and name):
        raise UsageError(
            "give --key KEY, or --latest --name NAME",
            hint="e.g. pgautodumper export --bucket B --latest --name orders > orders.sql",
        )
    keys = resolve(bucket, prefix, key=key, name=name)
    try:
        export(bucket, keys, sys.stdout.buffer, no_owner=no_owner, no_tablespaces=no_tablespaces)
    except BrokenPipeError:
        # Python's own recipe: no second error when the interpreter flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise PgautodumperError(
            f"export of {keys.stem}: stdout was closed before the end (its reader stopped)",
            hint="what was written is incomplete: discard it, and see why the reader stopped",
        ) from None
