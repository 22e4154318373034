"""pgautodumper restore: stream a backup into a database, whole or table by table."""

from __future__ import annotations

import click

from pgautodumper.cli.options import bucket_options, emit, json_option, lock_wait_option
from pgautodumper.connection import ConnectionInfo
from pgautodumper.errors import UsageError
from pgautodumper.parallel_restore import default_jobs
from pgautodumper.restore import RestoreOptions, resolve, restore
from pgautodumper.roles import CreatedRoles


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
    "--no-tablespaces",
    is_flag=True,
    help="Create everything in the target database's default tablespace (for a server "
    "that lacks the source's tablespaces).",
)
@click.option(
    "--with-roles",
    is_flag=True,
    help="First create the roles the backup needs that the target lacks (never with a "
    "password: login roles are listed so that you set one).",
)
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
@lock_wait_option("a statement of the restore")
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
    no_tablespaces: bool,
    with_roles: bool,
    tables: tuple[str, ...],
    schemas: tuple[str, ...],
    jobs: int,
    analyze: bool,
    lock_wait_timeout_seconds: int,
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
        no_tablespaces=no_tablespaces,
        with_roles=with_roles,
        jobs=jobs,
        analyze=analyze,
        tables=list(tables),
        schemas=list(schemas),
        lock_wait_timeout_seconds=lock_wait_timeout_seconds,
    )
    result = restore(bucket, keys, ConnectionInfo.from_url(database_url), options)
    what = f"{', '.join(result.tables)} from " if result.tables else ""
    lines = [
        f"restored {what}{result.dump_key} into {result.database} in {result.seconds:.1f}s "
        f"(sha256 of every object verified)"
    ]
    if result.roles is not None:
        lines += _roles_lines(result.roles)
    if (properties := result.database_properties) is not None:
        lines.append(f"database settings, grants, comment and owner: {properties.applied} set")
        lines += [f"  not set: {failure}" for failure in properties.failed]
    emit(result, as_json, "\n".join(lines))


def _roles_lines(created: CreatedRoles) -> list[str]:
    lines = [f"created role(s): {', '.join(created.created) or 'none needed'}"]
    if created.need_password:
        lines.append(
            f"login role(s) without a password: {', '.join(created.need_password)} "
            "(set one: ALTER ROLE name PASSWORD ...)"
        )
    if created.not_granted:
        lines.append(f"left out: {', '.join(created.not_granted)}")
    return lines
