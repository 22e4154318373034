"""pgautodumper status: every backup name's state, from the bucket alone."""

from __future__ import annotations

import sys
from datetime import timedelta

import click

from pgautodumper import status as status_module
from pgautodumper.cli.options import bucket_options, emit, human_bytes, json_option


def _row(row: status_module.NameStatus) -> str:
    backup, verify = row.last_backup, row.last_verify
    last = "-" if backup is None else f"{backup.age_hours:.1f}h ago"
    size = "-" if backup is None else human_bytes(backup.stored_bytes)
    took = (
        "-"
        if backup is None or backup.duration_seconds is None
        else (f"{backup.duration_seconds:.0f}s")
    )
    verified = "-" if verify is None else f"{verify.verdict} {verify.age_hours:.1f}h ago"
    recovery = (
        "-"
        if verify is None or verify.restore_seconds is None
        else (f"{verify.restore_seconds:.0f}s")
    )
    trend = status_module.sparkline(row.sizes)
    return (
        f"{row.name:<24} {row.state:<13} {last:>11} {size:>10} {took:>7}  "
        f"{verified:<20} {recovery:>8}  {trend}"
    )


@click.command("status")
@bucket_options
@click.option("--max-age", type=click.FloatRange(min=0.1), metavar="HOURS", show_default=True,
              default=status_module.DEFAULT_MAX_AGE_HOURS,
              help="A name without a complete backup this recent is STALE.")  # fmt: skip
@click.option("--verify-max-age", type=click.FloatRange(min=0.1), metavar="HOURS",
              default=status_module.DEFAULT_VERIFY_MAX_AGE_HOURS, show_default=True,
              help="A name without a passing verify this recent is UNVERIFIED.")  # fmt: skip
@json_option
def command(bucket: str, prefix: str, max_age: float, verify_max_age: float, as_json: bool) -> None:
    """One row per backup name: last backup, last verify, size trend, state.

    Exits 1 when any name is not OK (STALE, UNVERIFIED, FAILED-VERIFY), so it
    can gate a cron job or a monitoring check.
    """
    rows = status_module.status(
        bucket,
        prefix,
        max_age=timedelta(hours=max_age),
        verify_max_age=timedelta(hours=verify_max_age),
    )
    header = (
        f"{'NAME':<24} {'STATE':<13} {'LAST BACKUP':>11} {'SIZE':>10} {'TOOK':>7}  "
        f"{'LAST VERIFY':<20} {'RECOVERY':>8}  TREND"
    )
    text = "\n".join([header, *map(_row, rows)]) if rows else "no backups"
    emit([r.model_dump(mode="json") for r in rows], as_json, text)
    if not rows or any(r.state != "OK" for r in rows):
        sys.exit(1)
