"""pgautodumper prune: apply a retention policy to the backups of a name."""

from __future__ import annotations

from typing import Any

import click

from pgautodumper import prune
from pgautodumper.cli.options import bucket_options, emit, json_option
from pgautodumper.contract import RetentionPolicy


@click.command("prune")
@bucket_options
@click.option("--name", required=True, envvar="PGAUTODUMPER_NAME", help="Backup name.")
@click.option("--keep-last", type=click.IntRange(min=1), required=True, help="Newest N.")
@click.option("--keep-daily", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--keep-weekly", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--keep-monthly", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--keep-yearly", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--incomplete-grace-hours", type=click.IntRange(min=1), default=24, show_default=True,
    help="Remove leftovers without a manifest older than this.",
)  # fmt: skip
@click.option("--dry-run", is_flag=True, help="Print the plan; delete nothing.")
@json_option
def command(
    bucket: str, prefix: str, name: str, keep_last: int, keep_daily: int, keep_weekly: int,
    keep_monthly: int, keep_yearly: int, incomplete_grace_hours: int, dry_run: bool,
    as_json: bool,
) -> None:  # fmt: skip
    """Delete the backups of NAME that no keep rule keeps (GFS, as restic defines it).

    The newest verified backup is always kept. Manifests are deleted before
    data. Objects under Object Lock are skipped and reported.
    """
    policy = RetentionPolicy(
        keep_last=keep_last, keep_daily=keep_daily, keep_weekly=keep_weekly,
        keep_monthly=keep_monthly, keep_yearly=keep_yearly,
        incomplete_grace_hours=incomplete_grace_hours,
    )  # fmt: skip
    plan = prune.plan_prune(bucket, prefix, name, policy)
    result = prune.apply(plan, dry_run=dry_run)
    rows = plan.describe()
    text = "\n".join(_line(row, set(result.locked), dry_run) for row in rows)
    emit({"plan": rows, "result": result.model_dump(mode="json")}, as_json, text or "no backups")


def _line(row: dict[str, Any], locked: set[str], dry_run: bool) -> str:
    if row["stem"] in locked:
        action = "locked"
    elif row["action"] == "keep":
        action = "keep"
    else:
        action = "would delete" if dry_run else "deleted"
    return f"{action:<12}  {row['stem']}  ({'; '.join(row['reasons'])})"
