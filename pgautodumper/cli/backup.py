"""pgautodumper backup: stream one database into the store.

In the Fargate task the one input is ``PGAUTODUMPER_TASK`` (a TaskInput, as
Preflight decided it); on a command line the flags are the same fields.
"""

from __future__ import annotations

import os
from datetime import datetime

import click

from pgautodumper import layout, task, tls
from pgautodumper.backup import DEFAULT_LEVEL, DEFAULT_THREADS, BackupOptions, run_backup
from pgautodumper.cli.options import (
    bucket_options,
    connection_from,
    emit,
    json_option,
    lock_wait_option,
    source_options,
)
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.contract import TaskInput
from pgautodumper.errors import UsageError
from pgautodumper.manifest import Manifest, ManifestV2
from pgautodumper.parallel_backup import run_parallel_backup
from pgautodumper.plan import DEFAULT_STREAM_THRESHOLD
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


def options_for(task_input: TaskInput, *, level: int, threads: int) -> BackupOptions:
    keys = task_input.keys
    return BackupOptions(
        bucket=task_input.bucket,
        prefix=keys.prefix,
        name=keys.name,
        run_id=keys.run_id,
        started_at=keys.started_at,
        level=level,
        threads=threads,
        pg_dump_major=task_input.pg_dump_major,
        part_size=task_input.part_size_bytes,
        jobs=task_input.jobs,
        lock_wait_timeout_seconds=task_input.lock_wait_timeout_seconds,
        stream_threshold_bytes=task_input.stream_threshold_bytes,
    )


def database_name(info: ConnectionInfo) -> str:
    with connect(info) as conn:
        return conn.info.dbname


@click.command("backup")
@source_options
@bucket_options(required=False)
@click.option("--name", help="Backup name [default: the database name].")
@click.option("--run-id", help="Run id in the key [default: random].")
@click.option(
    "--started-at", type=IsoTime(), help="Run start time in the key (ISO 8601) [default: now]."
)
@click.option("--level", default=DEFAULT_LEVEL, show_default=True, type=click.IntRange(-7, 22),
              help="zstd level.")  # fmt: skip
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, type=click.IntRange(0, 64),
              help="zstd worker threads.")  # fmt: skip
@click.option(
    "--pg-dump-major",
    type=int,
    help="Use exactly this pg_dump major [default: the oldest that can dump the server].",
)
@click.option(
    "--part-size-bytes",
    "--part-size",
    "part_size_bytes",
    type=click.IntRange(5 * MiB),
    help="Starting part size in bytes [default: from the database size].",
)
@click.option(
    "--jobs",
    type=click.IntRange(1, 64),
    default=lambda: len(os.sched_getaffinity(0)),
    show_default="the CPUs available",
    help="Parallel COPY streams (format 2).",
)
@lock_wait_option("the dump")
@click.option(
    "--ssl-root-cert",
    metavar="ARN",
    help="CA for sslmode verify-ca/verify-full: a Secrets Manager secret or SSM parameter "
    "holding its PEM [default: the RDS/Aurora bundle, when installed].",
)
@click.option(
    "--stream-threshold-bytes",
    type=click.IntRange(1024 * 1024),
    default=DEFAULT_STREAM_THRESHOLD,
    show_default=True,
    help="Tables at least this big stream by COPY in parallel parts (format 2).",
)
@click.option(
    "--format",
    "format_version",
    type=click.Choice(["1", "2"]),
    default="2",
    show_default=True,
    help="Storage format: 2 streams tables in parallel; 1 is one pg_dump stream.",
)
@json_option
def command(
    database_url: str | None,
    secret_arn: str | None,
    secret_version_id: str | None,
    bucket: str | None,
    prefix: str,
    name: str | None,
    run_id: str | None,
    started_at: datetime | None,
    level: int,
    threads: int,
    pg_dump_major: int | None,
    part_size_bytes: int | None,
    jobs: int,
    lock_wait_timeout_seconds: int,
    ssl_root_cert: str | None,
    stream_threshold_bytes: int,
    format_version: str,
    as_json: bool,
) -> None:
    """Dump a database to S3: parallel COPY streams and pg_dump, zstd, manifest last.

    In the Fargate task, PGAUTODUMPER_TASK (JSON) replaces the flags; a failure
    then also leaves <stem>.backup.outcome.json for the workflow to report.
    """
    task_input = task.input_from_environment()
    if task_input is not None:
        info = task.connection(task_input)
        options = options_for(task_input, level=level, threads=threads)
        manifest = task.run(task_input, "backup", lambda: run_parallel_backup(info, options))
    else:
        if not bucket:
            raise UsageError("--bucket is required", hint="or set PGAUTODUMPER_BUCKET")
        info = connection_from(database_url, secret_arn, secret_version_id)
        sslmode = info.params.get("sslmode") or os.environ.get("PGSSLMODE")
        info = info.with_params(**tls.root_cert_params(sslmode, ssl_root_cert, info.params))
        keys = layout.backup_keys(prefix, name or database_name(info), started_at, run_id)
        task_input = TaskInput(
            bucket=bucket,
            keys=keys,
            run_id=keys.run_id,
            secret_arn=secret_arn,
            secret_version_id=secret_version_id,
            ssl_root_cert=ssl_root_cert,
            pg_dump_major=pg_dump_major,
            part_size_bytes=part_size_bytes,
            jobs=jobs,
            lock_wait_timeout_seconds=lock_wait_timeout_seconds,
            stream_threshold_bytes=stream_threshold_bytes,
        )
        backup = run_parallel_backup if format_version == "2" else run_backup
        manifest = backup(info, options_for(task_input, level=level, threads=threads))
    _report(manifest, task_input.bucket, as_json)


def _report(manifest: Manifest | ManifestV2, bucket: str, as_json: bool) -> None:
    emit(
        manifest,
        as_json,
        f"backed up {manifest.database} to s3://{bucket}/{manifest.dump_key}: "
        f"{manifest.stored_bytes} bytes stored ({manifest.raw_bytes} raw) in "
        f"{manifest.duration_seconds:.1f}s, sha256 {manifest.sha256}",
    )
