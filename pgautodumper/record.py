"""Record: what a finished dump produced, checked, compared and published as metrics.

The run's manifest is read back (refusing an unknown ``format_version``),
checked for sanity (non-zero sizes, tables present, the keys this run
expects), compared with the previous complete backup of the same name — a
stored size below ``fraction`` of the previous one is flagged as a size
anomaly, the signature of a dump that silently lost data — and turned into a
:class:`DumpResult` and CloudWatch metrics (EMF via powertools).

RecordVerify reads the verdict a verify task wrote into a :class:`VerifyResult`
and publishes the measured recovery time as ``RestoreSeconds``.

The metric ``BackupSucceeded`` is what the dead-man alarm watches; its only
dimension is ``Name``, so the alarm can name the metric exactly (so do
``RestoreSeconds`` and the others).
"""

from __future__ import annotations

import logging
import os
from datetime import datetime

from aws_lambda_powertools import Metrics
from aws_lambda_powertools.metrics import MetricUnit

from pgautodumper import catalog, layout
from pgautodumper.contract import (
    DumpResult,
    ExecutionContext,
    ExecutionDocument,
    PreflightResult,
    VerifyResult,
)
from pgautodumper.errors import ManifestError, UsageError
from pgautodumper.manifest import Manifest, ManifestV2, Verdict

log = logging.getLogger(__name__)

ANOMALY_FRACTION_ENV = "PGAUTODUMPER_SIZE_ANOMALY_FRACTION"
DEFAULT_ANOMALY_FRACTION = 0.5


def anomaly_fraction() -> float:
    raw = os.environ.get(ANOMALY_FRACTION_ENV)
    try:
        value = float(raw) if raw else DEFAULT_ANOMALY_FRACTION
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise UsageError(
            f"{ANOMALY_FRACTION_ENV}={raw!r} is not a fraction between 0 and 1",
            hint="set it to e.g. 0.5 (flag backups smaller than half the previous)",
        )
    return value


def check_manifest(manifest: Manifest | ManifestV2, *, name: str, run_id: str) -> None:
    """Sanity of a manifest a successful dump just wrote (its keys are checked on reading)."""
    where = manifest.manifest_key
    problems = []
    if manifest.name != name:
        problems.append(f"it names backup {manifest.name!r}, not {name!r}")
    if manifest.run_id != run_id:
        problems.append(f"it was written by run {manifest.run_id}, not this run's {run_id}")
    if manifest.stored_bytes <= 0 or manifest.raw_bytes <= 0:
        problems.append(f"sizes are {manifest.stored_bytes} stored / {manifest.raw_bytes} raw")
    if not manifest.tables:
        problems.append("it lists no tables")
    if problems:
        raise ManifestError(
            f"manifest {where} fails the sanity check: {'; '.join(problems)}",
            hint="the dump is not a usable backup; inspect the dump task's log",
        )


def previous_stored_bytes(
    bucket: str, prefix: str | None, name: str, current: layout.BackupKeys
) -> int | None:
    """Stored size of the newest complete backup older than ``current``."""
    for entry in catalog.list_backups(bucket, prefix, name):
        if entry.complete and entry.keys.started_at < current.started_at:
            return entry.stored_bytes
    return None


def dump_result(
    manifest: Manifest | ManifestV2, *, previous: int | None, fraction: float
) -> DumpResult:
    duration = max(manifest.duration_seconds, 0.0)
    return DumpResult(
        dump_key=manifest.dump_key,
        manifest_key=manifest.manifest_key,
        stored_bytes=manifest.stored_bytes,
        raw_bytes=manifest.raw_bytes,
        sha256=manifest.sha256,
        duration_seconds=duration,
        throughput_bytes_per_second=manifest.raw_bytes / duration if duration > 0 else 0.0,
        tables=len(manifest.tables),
        total_rows=sum(t.rows for t in manifest.tables),
        previous_stored_bytes=previous,
        size_anomaly=previous is not None and manifest.stored_bytes < fraction * previous,
    )


def emit_metrics(metrics: Metrics, name: str, result: DumpResult) -> None:
    """Add the run's metrics; the caller's ``log_metrics`` flushes them as EMF."""
    metrics.add_dimension(name="Name", value=name)
    metrics.add_metric(name="BackupSucceeded", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="BackupBytes", unit=MetricUnit.Bytes, value=result.stored_bytes)
    metrics.add_metric(name="BackupRawBytes", unit=MetricUnit.Bytes, value=result.raw_bytes)
    metrics.add_metric(
        name="BackupDurationSeconds", unit=MetricUnit.Seconds, value=result.duration_seconds
    )
    metrics.add_metric(
        name="BackupThroughputBytesPerSecond",
        unit=MetricUnit.BytesPerSecond,
        value=result.throughput_bytes_per_second,
    )


def record(bucket: str, name: str, keys: layout.BackupKeys, *, fraction: float) -> DumpResult:
    manifest = catalog.read_manifest(bucket, keys)
    check_manifest(manifest, name=name, run_id=keys.run_id)
    result = dump_result(
        manifest, previous=previous_stored_bytes(bucket, keys.prefix, name, keys), fraction=fraction
    )
    if result.size_anomaly:
        log.warning(
            "%s: stored size %d is below %.0f%% of the previous backup (%s bytes)",
            name, result.stored_bytes, fraction * 100, result.previous_stored_bytes,
        )  # fmt: skip
    return result


def run(document: ExecutionDocument, metrics: Metrics) -> DumpResult:
    """The Record Lambda."""
    preflight: PreflightResult = document.require("preflight")
    request = document.request
    result = record(request.bucket, request.name, preflight.task.keys, fraction=anomaly_fraction())
    emit_metrics(metrics, request.name, result)
    return result


# -- verify ----------------------------------------------------------------------


def verify_result(verdict: Verdict, keys: layout.BackupKeys) -> VerifyResult:
    return VerifyResult(
        verdict=verdict.verdict,
        verified_key=verdict.dump_key,
        restore_seconds=verdict.restore_seconds,
        mismatched_tables=[t.table for t in verdict.mismatches()] + verdict.extra_tables,
        missing_extensions=verdict.missing_extensions,
        missing_collations=verdict.missing_collations,
        unchecked_tables=verdict.unchecked_tables,
        reason=verdict.reason,
        checked_at=verdict.checked_at,
    )


def record_verify(bucket: str, keys: layout.BackupKeys, *, since: datetime) -> VerifyResult:
    """The verdict this run's verify task wrote next to the backup (not an older one)."""
    verdict = catalog.read_verdict(bucket, keys)
    if verdict is None or verdict.checked_at < since:
        raise ManifestError(
            f"the verify task left no verdict of this run at s3://{bucket}/{keys.verified}",
            hint="read the verify task's log",
        )
    return verify_result(verdict, keys)


def run_verify(document: ExecutionDocument, metrics: Metrics) -> VerifyResult:
    """The RecordVerify Lambda: $.verify, and the recovery time as a metric."""
    preflight: PreflightResult = document.require("preflight")
    execution: ExecutionContext = document.require("execution")
    result = record_verify(document.request.bucket, preflight.task.keys, since=execution.start_time)
    if result.verdict == "passed" and result.restore_seconds is not None:
        metrics.add_dimension(name="Name", value=document.request.name)
        metrics.add_metric(
            name="RestoreSeconds", unit=MetricUnit.Seconds, value=result.restore_seconds
        )
    return result
