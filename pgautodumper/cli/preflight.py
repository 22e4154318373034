"""pgautodumper preflight: the Preflight Lambda's checks, from a laptop."""

from __future__ import annotations

import click

from pgautodumper import preflight
from pgautodumper.cli.options import connection_from, emit, json_option, source_options


@click.command("preflight")
@source_options
@click.option("--bucket", envvar="PGAUTODUMPER_BUCKET", help="Also check the bucket is writable.")
@click.option("--prefix", default="", envvar="PGAUTODUMPER_PREFIX", help="Key prefix.")
@click.option(
    "--name", default="preflight", show_default=True, envvar="PGAUTODUMPER_NAME",
    help="Backup name (the bucket probe is written, then deleted, under its folder).",
)  # fmt: skip
@json_option
def command(
    database_url: str | None, secret_arn: str | None, secret_version_id: str | None,
    bucket: str | None, prefix: str, name: str, as_json: bool,
) -> None:  # fmt: skip
    """Check that a scheduled backup of this database would work.

    Connects, reads the server version and size, names every table, sequence,
    large object and schema the role cannot read, chooses the pg_dump major and
    part size, and (with --bucket) writes and deletes a probe object.
    """
    info = connection_from(database_url, secret_arn, secret_version_id)
    report = preflight.check(info, bucket=bucket, prefix=prefix, name=name)
    lines = [
        f"database   {report.database}: PostgreSQL {report.server_version}, "
        f"{report.database_size_bytes} bytes{', replica' if report.is_replica else ''}",
        "readable   every schema, table, sequence and large object",
        f"pg_dump    major {report.pg_dump_major} in the task; "
        f"local: {report.local_pg_dump or 'none that fits'}",
        f"part size  {report.part_size_bytes} bytes",
        f"bucket     {report.bucket_checked + ' is writable' if report.bucket_checked else '-'}",
        *(f"warning    {w}" for w in report.warnings),
    ]
    emit(report, as_json, "\n".join(lines))
