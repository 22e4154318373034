"""Every backup name's state at a glance: fresh, verified, and how long a restore takes.

One listing of the bucket (or prefix) groups objects by backup; per name, only
the newest complete backup's manifest (its duration) and the newest verdict
are read. Nothing reads a dump, so a bucket with thousands of backups answers
in seconds.

    OK             a complete backup within --max-age, and a passing verify within
                   --verify-max-age (the newest verdict passed)
    STALE          no complete backup within --max-age (or none at all)
    FAILED-VERIFY  the newest verdict failed
    UNVERIFIED     no passing verify within --verify-max-age
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import BaseModel

from pgautodumper import catalog
from pgautodumper.catalog import BackupEntry
from pgautodumper.errors import ManifestError

log = logging.getLogger(__name__)

State = Literal["OK", "STALE", "FAILED-VERIFY", "UNVERIFIED"]
DEFAULT_MAX_AGE_HOURS = 26.0  # a daily schedule, plus slack for a slow run
DEFAULT_VERIFY_MAX_AGE_HOURS = 8 * 24.0  # a weekly verify, plus a day
TREND_LENGTH = 14


class LastBackup(BaseModel):
    key: str
    started_at: datetime
    age_hours: float
    stored_bytes: int
    duration_seconds: float | None


class LastVerify(BaseModel):
    key: str
    checked_at: datetime
    age_hours: float
    verdict: str
    restore_seconds: float | None


class NameStatus(BaseModel):
    """One row of ``status`` (its ``--json`` shape is stable)."""

    name: str
    state: State
    reason: str
    backups: int
    last_backup: LastBackup | None
    last_verify: LastVerify | None
    sizes: list[int]  # stored bytes of the newest complete backups, oldest first


def _hours(now: datetime, then: datetime) -> float:
    return round((now - then).total_seconds() / 3600, 2)


def _last_backup(bucket: str, complete: list[BackupEntry], now: datetime) -> LastBackup | None:
    """The newest complete backup whose manifest reads and whose objects are all there:
    another cannot be restored, so it is skipped, with a warning."""
    for entry in complete:
        try:
            manifest = catalog.read_manifest(bucket, entry.keys)
        except ManifestError as exc:
            log.warning("%s; skipped, as a restore would refuse it", exc)
            continue
        if missing := catalog.missing_objects(entry.objects, manifest):
            message = catalog.missing_message(manifest.dump_key, missing)
            log.warning("%s; skipped, as a restore would refuse it", message)
            continue
        return LastBackup(
            key=entry.keys.manifest,
            started_at=entry.keys.started_at,
            age_hours=_hours(now, entry.keys.started_at),
            stored_bytes=entry.stored_bytes,
            duration_seconds=manifest.duration_seconds,
        )
    return None


def _last_verify(bucket: str, complete: list[BackupEntry], now: datetime) -> LastVerify | None:
    for entry in complete:
        if not entry.has_verdict:
            continue
        verdict = catalog.readable_verdict(bucket, entry.keys)
        if verdict is None:
            continue
        return LastVerify(
            key=entry.keys.verified,
            checked_at=verdict.checked_at,
            age_hours=_hours(now, verdict.checked_at),
            verdict=verdict.verdict,
            restore_seconds=verdict.restore_seconds,
        )
    return None


def judge(
    last_backup: LastBackup | None,
    last_verify: LastVerify | None,
    *,
    max_age: timedelta,
    verify_max_age: timedelta,
) -> tuple[State, str]:
    """The state of one name, and why (a pure function of what was found)."""
    if last_backup is None:
        return "STALE", "no complete backup"
    if last_backup.age_hours > max_age.total_seconds() / 3600:
        return "STALE", f"the newest complete backup is {last_backup.age_hours:.1f} h old"
    if last_verify is not None and last_verify.verdict not in ("passed", "warn"):
        return "FAILED-VERIFY", f"the newest verify ({last_verify.checked_at:%Y-%m-%d}) failed"
    if last_verify is None or last_verify.age_hours > verify_max_age.total_seconds() / 3600:
        return "UNVERIFIED", "no passing verify within the verify window"
    return "OK", "fresh and verified"


def status(
    bucket: str,
    prefix: str | None,
    *,
    max_age: timedelta = timedelta(hours=DEFAULT_MAX_AGE_HOURS),
    verify_max_age: timedelta = timedelta(hours=DEFAULT_VERIFY_MAX_AGE_HOURS),
    now: datetime | None = None,
) -> list[NameStatus]:
    """One row per backup name found under the prefix, by name."""
    now = now or datetime.now(UTC)
    rows = []
    for name, entries in sorted(catalog.list_all(bucket, prefix).items()):
        complete = [e for e in entries if e.complete]
        # Those whose main object is gone too: skipped by name, with a warning.
        last_backup = _last_backup(bucket, [e for e in entries if e.has_manifest], now)
        last_verify = _last_verify(bucket, complete, now)
        state, reason = judge(
            last_backup, last_verify, max_age=max_age, verify_max_age=verify_max_age
        )
        rows.append(
            NameStatus(
                name=name,
                state=state,
                reason=reason,
                backups=len(complete),
                last_backup=last_backup,
                last_verify=last_verify,
                sizes=[e.stored_bytes for e in reversed(complete[:TREND_LENGTH])],
            )
        )
    return rows


_BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: list[int]) -> str:
    """Sizes as bars, lowest to highest: a shrinking backup shows at a glance."""
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    return "".join(_BARS[0 if span == 0 else (v - low) * (len(_BARS) - 1) // span] for v in values)


BUCKET_ENV = "PGAUTODUMPER_BUCKET"
PREFIX_ENV = "PGAUTODUMPER_PREFIX"


class Freshness(BaseModel):
    """What the Freshness Lambda published."""

    names: list[NameStatus]


def publish_freshness(namespace: str) -> Freshness:
    """``HoursSinceLastBackup`` and ``HoursSinceLastVerify`` per name (the dashboard's).

    One EMF document per metric and name (powertools' ``single_metric``): its only
    dimension is ``Name``, as the alarms and the dashboard expect.
    """
    from aws_lambda_powertools.metrics import MetricUnit, single_metric

    rows = status(os.environ[BUCKET_ENV], os.environ.get(PREFIX_ENV, ""))
    for row in rows:
        ages = {
            "HoursSinceLastBackup": row.last_backup.age_hours if row.last_backup else None,
            "HoursSinceLastVerify": row.last_verify.age_hours
            if row.last_verify and row.last_verify.verdict in ("passed", "warn")
            else None,
        }
        for metric, hours in ages.items():
            if hours is None:
                continue
            with single_metric(
                name=metric, unit=MetricUnit.Count, value=hours, namespace=namespace
            ) as emf:
                emf.add_dimension(name="Name", value=row.name)
    return Freshness(names=rows)
