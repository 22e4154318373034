"""pgautodumper backup: stream one database into the store."""

from __future__ import annotations

from datetime import datetime

import click

from pgautodumper.backup import DEFAULT_LEVEL, DEFAULT_THREADS, BackupOptions, run_backup
from pgautodumper.cli.options import (
    bucket_options,
    connection_from,
    emit,
    json_option,
    source_options,
)
from pgautodumper.storage import MiB


class IsoTime(click.ParamType):
    name = "ISO-8601"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, datetime):
            return value
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time", param, ctx)


@click.command("backup")
@source_options
@bucket_options
@click.option("--name", envvar="PGAUTODUMPER_NAME", help="Backup name [default: database name].")
@click.option("--run-id", envvar="PGAUTODUMPER_RUN_ID", help="Run id in the key [default: random].")
@click.option(
    "--started-at",
    envvar="PGAUTODUMPER_STARTED_AT",
    type=IsoTime(),
    help="Run start time in the key (ISO 8601) [default: now].",
)
@click.option("--level", default=DEFAULT_LEVEL, show_default=True, type=click.IntRange(-7, 22),
              help="zstd level.")  # fmt: skip
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, type=click.IntRange(0, 64),
              help="zstd worker threads.")  # fmt: skip
@click.option(
    "--pg-dump-major",
    envvar="PGAUTODUMPER_PG_DUMP_MAJOR",
    type=int,
    help="Use exactly this pg_dump major [default: the oldest that can dump the server].",
)
@click.option(
    "--part-size",
    envvar="PGAUTODUMPER_PART_SIZE",
    type=click.IntRange(5 * MiB),
    help="Starting part size in bytes [default: from the database size].",
)
@json_option
def command(
    database_url: str | None,
    secret_id: str | None,
    secret_version_id: str | None,
    bucket: str,
    prefix: str,
    name: str | None,
    run_id: str | None,
    started_at: datetime | None,
    level: int,
    threads: int,
    pg_dump_major: int | None,
    part_size: int | None,
    as_json: bool,
) -> None:
    """Dump a database to S3: pg_dump | zstd | multipart upload, manifest last."""
    manifest = run_backup(
        connection_from(database_url, secret_id, secret_version_id),
        BackupOptions(
            bucket=bucket,
            prefix=prefix,
            name=name,
            run_id=run_id,
            started_at=started_at,
            level=level,
            threads=threads,
            pg_dump_major=pg_dump_major,
            part_size=part_size,
        ),
    )
    emit(
        manifest,
        as_json,
        f"backed up {manifest.database} to s3://{bucket}/{manifest.dump_key}: "
        f"{manifest.stored_bytes} bytes stored ({manifest.raw_bytes} raw) in "
        f"{manifest.duration_seconds:.1f}s, sha256 {manifest.sha256}",
    )
