"""pgautodumper restore: stream a backup into a database, whole or table by table."""

from __future__ import annotations

import click

from pgautodumper.cli.options import bucket_options, emit, json_option
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import UsageError
from pgautodumper.parallel_restore import default_jobs
from pgautodumper.restore import RestoreOptions, resolve, restore


@click.command("restore")
@bucket_options
@click.option("--key", help="A key of the backup (its .manifest.json, or any of its objects).")
@click.option("--latest", is_flag=True, help="The newest complete backup of --name.")
@click.option("--name", help="Backup name, with --latest.")
@click.option(
    "--database-url",
    required=True,
    help="Target database (must exist; empty, unless --clean or --table/--schema).",
)
@click.option("--clean", is_flag=True, help="Drop and replace objects that already exist.")
@click.option("--no-owner", is_flag=True, help="Do not restore ownership and privileges.")
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="SCHEMA.TABLE",
    help="Restore only this table (repeatable): definition, data, indexes, constraints, "
    "triggers, comments, grants, owned sequences. Refused if it exists, unless --clean.",
)
@click.option(
    "--schema",
    "schemas",
    multiple=True,
    metavar="NAME",
    help="Restore only the tables of this schema (repeatable); the whole schema if missing.",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=default_jobs,
    show_default="the CPUs available",
    help="Parallel loaders and pg_restore jobs (format 2).",
)
@click.option("--analyze", is_flag=True, help="Run ANALYZE on what was restored.")
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
    tables: tuple[str, ...],
    schemas: tuple[str, ...],
    jobs: int,
    analyze: bool,
    as_json: bool,
) -> None:
    """Restore a backup, checking every object's sha256 while streaming."""
    if bool(key) == bool(latest and name):
        raise UsageError(
            "give --key KEY, or --latest --name NAME",
            hint="e.g. pgautodumper restore --bucket B --latest --name orders --database-url URL",
        )
    keys = resolve(bucket, prefix, key=key, name=name)
    options = RestoreOptions(
        clean=clean,
        no_owner=no_owner,
        jobs=jobs,
        analyze=analyze,
        tables=list(tables),
        schemas=list(schemas),
    )
    result = restore(bucket, keys, ConnectionInfo.from_url(database_url), options)
    what = f"{', '.join(result.tables)} from " if result.tables else ""
    emit(
        result,
        as_json,
        f"restored {what}{result.dump_key} into {result.database} in {result.seconds:.1f}s "
        f"(sha256 of every object verified)",
    )
