"""Prune: apply the retention policy to the backups of one name in S3.

The plan comes from :func:`pgautodumper.retention.plan` over the complete
backups only. A deleted backup loses its manifest first, then its verdict and
its dump, so a crash halfway leaves an orphan dump (an incomplete leftover,
removed by a later prune) and never a manifest pointing at nothing. In a
versioned bucket every version of each object is deleted, since a delete
marker would hide a backup without freeing it. A version under Object Lock
retention cannot be deleted: it is skipped and reported in
``PruneResult.locked``; if that version is a manifest, the rest of that backup
stays too, so it remains a complete backup.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from pgautodumper import aws, catalog, retention, storage
from pgautodumper.catalog import BackupEntry
from pgautodumper.contract import ExecutionDocument, PreflightResult, PruneResult, RetentionPolicy

log = logging.getLogger(__name__)

# What S3 answers for a version under Object Lock retention or legal hold.
_LOCKED = ("AccessDenied", "InvalidRequest")


class PrunePlan(BaseModel):
    """The retention plan plus the incomplete leftovers to remove."""

    bucket: str
    prefix: str
    name: str
    retention: retention.RetentionPlan
    incomplete: list[BackupEntry]
    complete: list[BackupEntry]

    def entry(self, stem: str) -> BackupEntry:
        return next(e for e in self.complete if e.keys.stem == stem)

    def describe(self) -> list[dict[str, object]]:
        """Stable machine-readable form: one row per backup, newest first."""
        rows: list[dict[str, object]] = [
            {
                "stem": d.stem,
                "started_at": d.started_at.isoformat(),
                "action": "keep" if d.keep else "delete",
                "reasons": d.reasons,
            }
            for d in self.retention.decisions
        ]
        rows += [
            {
                "stem": e.keys.stem,
                "started_at": e.keys.started_at.isoformat(),
                "action": "delete",
                "reasons": ["incomplete (no manifest) and older than the grace period"],
            }
            for e in self.incomplete
        ]
        return rows


def newest_verified_stem(bucket: str, entries: list[BackupEntry]) -> str | None:
    """The newest complete backup whose verify verdict passed (reads verdicts newest first)."""
    for entry in entries:
        if entry.complete and entry.has_verdict:
            verdict = catalog.readable_verdict(bucket, entry.keys)
            if verdict is not None and verdict.passed:
                return entry.keys.stem
    return None


def plan_prune(
    bucket: str,
    prefix: str | None,
    name: str,
    policy: RetentionPolicy,
    *,
    current_stem: str | None = None,
    now: datetime | None = None,
) -> PrunePlan:
    entries = catalog.list_backups(bucket, prefix, name)
    complete = [e for e in entries if e.complete]
    verified = newest_verified_stem(bucket, complete)
    candidates = [
        retention.Candidate(
            stem=e.keys.stem, started_at=e.keys.started_at, verified=e.keys.stem == verified
        )
        for e in complete
    ]
    leftovers = {e.keys.stem: e for e in entries if not e.complete and e.keys.stem != current_stem}
    stale = retention.stale_incomplete(
        ((stem, e.last_modified or e.keys.started_at) for stem, e in leftovers.items()),
        now=now or datetime.now(UTC),
        grace_hours=policy.incomplete_grace_hours,
    )
    return PrunePlan(
        bucket=bucket,
        prefix=prefix or "",
        name=name,
        retention=retention.plan(candidates, policy, current_stem=current_stem),
        incomplete=[leftovers[stem] for stem in stale],
        complete=complete,
    )


def _delete_all_versions(bucket: str, key: str) -> bool:
    """Delete every version of ``key``; False when a version is under Object Lock."""
    s3 = aws.client("s3")
    try:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        versions = [
            v["VersionId"]
            for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])]
            if v["Key"] == key
        ]
        for version_id in versions:
            try:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
            except ClientError as exc:
                if aws.error_code(exc) in _LOCKED:
                    log.warning("s3://%s/%s version %s is locked; kept", bucket, key, version_id)
                    return False
                raise
    except (ClientError, BotoCoreError) as exc:
        raise storage.storage_error(exc, bucket=bucket, key=key, action="delete") from None
    return True


def _delete_backup(bucket: str, entry: BackupEntry) -> bool:
    """Delete in commit order (manifest first); False when Object Lock stopped it.

    ``all`` stops at the first locked key, so a locked manifest keeps its dump.
    """
    return all(_delete_all_versions(bucket, key) for key in entry.object_keys())


def apply(plan: PrunePlan, *, dry_run: bool = False) -> PruneResult:
    result = PruneResult(dry_run=dry_run, kept=[d.stem for d in plan.retention.keep])
    for decision in plan.retention.delete:
        if dry_run or _delete_backup(plan.bucket, plan.entry(decision.stem)):
            result.deleted.append(decision.stem)
        else:
            result.locked.append(decision.stem)
    for entry in plan.incomplete:
        if dry_run or _delete_backup(plan.bucket, entry):
            result.incomplete_deleted.append(entry.keys.stem)
        else:
            result.locked.append(entry.keys.stem)
    log.info(
        "prune %s: %d kept, %d deleted, %d incomplete removed, %d locked%s",
        plan.name, len(result.kept), len(result.deleted), len(result.incomplete_deleted),
        len(result.locked), " (dry run)" if dry_run else "",
    )  # fmt: skip
    return result


def prune(
    bucket: str,
    prefix: str | None,
    name: str,
    policy: RetentionPolicy,
    *,
    current_stem: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> PruneResult:
    plan = plan_prune(bucket, prefix, name, policy, current_stem=current_stem, now=now)
    return apply(plan, dry_run=dry_run)


def run(document: ExecutionDocument) -> PruneResult:
    """The Prune Lambda: the current run's backup is protected by its stem."""
    preflight: PreflightResult = document.require("preflight")
    request = document.request
    return prune(
        request.bucket, request.prefix, request.name, request.retention,
        current_stem=preflight.task.keys.stem,
    )  # fmt: skip
