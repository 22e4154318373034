"""What is in the store: backups of a name, complete or not, verified or not.

A backup is *complete* when its manifest exists (the commit marker); a dump
object without one is an incomplete leftover that restore and list ignore
and retention may delete.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field

from pgautodumper import aws, layout, storage
from pgautodumper.errors import (
    BackupNotFoundError,
    ManifestError,
    ObjectMissingError,
    StorageAccessDeniedError,
)
from pgautodumper.manifest import Manifest, ManifestV2, Verdict, parse_manifest, parse_verdict

log = logging.getLogger(__name__)

# Objects that describe a backup rather than hold its data.
_NOT_DATA = (layout.MANIFEST_SUFFIX, layout.VERIFIED_SUFFIX, layout.OUTCOME_SUFFIX)


class BackupEntry(BaseModel):
    keys: layout.BackupKeys
    has_dump: bool = False
    has_manifest: bool = False
    has_verdict: bool = False
    last_modified: datetime | None = None
    objects: list[str] = Field(default_factory=list, description="every key under the stem")
    stored_bytes: int = Field(0, description="the size of its data objects, as listed")

    @property
    def complete(self) -> bool:
        return self.has_dump and self.has_manifest

    def object_keys(self) -> list[str]:
        """Existing objects, manifest first: deleting in this order never leaves
        a manifest that points at a missing object."""
        rest = sorted(key for key in self.objects if key != self.keys.manifest)
        return ([self.keys.manifest] if self.has_manifest else []) + rest

    def add(self, key: str, size: int, modified: datetime) -> None:
        self.objects.append(key)
        self.has_manifest |= key == self.keys.manifest
        self.has_verdict |= key == self.keys.verified
        # Format 1 keeps its data in the dump; format 2 always has a schema archive.
        self.has_dump |= key in (self.keys.dump, self.keys.schema_archive)
        if not key.endswith(_NOT_DATA):
            self.stored_bytes += size
        if self.last_modified is None or modified > self.last_modified:
            self.last_modified = modified


def list_all(
    bucket: str, prefix: str | None, name: str | None = None
) -> dict[str, list[BackupEntry]]:
    """Every backup under the prefix (or of one name), by name, newest first: one listing."""
    folder = layout.name_prefix(prefix, name) if name else layout.normalize_prefix(prefix)
    entries: dict[str, BackupEntry] = {}
    for obj in _listing(bucket, folder):
        keys = layout.parse_key(obj["Key"], prefix)
        if keys is None or (name is not None and keys.name != name):
            continue
        entry = entries.setdefault(keys.stem, BackupEntry(keys=keys))
        entry.add(obj["Key"], obj["Size"], obj["LastModified"])
    by_name: dict[str, list[BackupEntry]] = {}
    for entry in sorted(entries.values(), key=lambda e: e.keys.started_at, reverse=True):
        by_name.setdefault(entry.keys.name, []).append(entry)
    return by_name


def _listing(bucket: str, folder: str) -> Iterator[dict[str, Any]]:
    """Every object under ``folder``, as ListObjectsV2 describes it."""
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            yield from page.get("Contents", [])
    except (ClientError, BotoCoreError) as exc:
        raise storage.storage_error(exc, bucket=bucket, key=folder, action="list") from None


def list_backups(bucket: str, prefix: str | None, name: str) -> list[BackupEntry]:
    """Every backup of ``name``, newest first, complete or not."""
    return list_all(bucket, prefix, name).get(name, [])


def read_manifest(bucket: str, keys: layout.BackupKeys) -> Manifest | ManifestV2:
    try:
        raw = storage.get(bucket, keys.manifest)
    except BackupNotFoundError:
        raise BackupNotFoundError(
            f"s3://{bucket}/{keys.manifest} does not exist: {keys.dump} is not a complete backup",
            hint="'pgautodumper list' shows complete backups",
        ) from None
    manifest = parse_manifest(raw, keys.manifest)
    expected = keys.dump if isinstance(manifest, Manifest) else keys.schema_archive
    if manifest.dump_key != expected:
        raise ManifestError(
            f"manifest {keys.manifest} describes {manifest.dump_key}, not {expected}"
        )
    return manifest


def read_verdict(bucket: str, keys: layout.BackupKeys) -> Verdict | None:
    try:
        return parse_verdict(storage.get(bucket, keys.verified), keys.verified)
    except BackupNotFoundError:
        return None


def readable_verdict(bucket: str, keys: layout.BackupKeys) -> Verdict | None:
    """The verdict, or None with a warning when it is unreadable: one damaged file
    must not hide the state of every other backup (list, status, prune)."""
    try:
        return read_verdict(bucket, keys)
    except ManifestError as exc:
        log.warning("%s; taken as unverified", exc)
        return None


def latest_complete(bucket: str, prefix: str | None, name: str) -> layout.BackupKeys:
    for entry in list_backups(bucket, prefix, name):
        if entry.complete:
            return entry.keys
        if entry.has_manifest:
            log.warning(
                "backup %s has a manifest, but its dump (or schema archive) is gone: deleted "
                "after the backup completed; taking the one before",
                entry.keys.stem,
            )
    raise BackupNotFoundError(
        f"no complete backup of {name!r} under s3://{bucket}/{layout.name_prefix(prefix, name)}",
        hint="check --name and --prefix; 'pgautodumper list --all' shows incomplete ones",
    )


def stored_keys(manifest: Manifest | ManifestV2) -> list[str]:
    """The keys of every object the manifest lists (itself aside)."""
    if isinstance(manifest, ManifestV2):
        return [o.key for o in manifest.objects()]
    return [manifest.dump_key]


def missing_objects(present: Collection[str], manifest: Manifest | ManifestV2) -> list[str]:
    """The objects ``manifest`` lists that are not ``present`` (listed)."""
    return [key for key in stored_keys(manifest) if key not in present]


MISSING_HINT = (
    "restore an older backup ('pgautodumper list' marks this one MISSING-OBJECTS), and find "
    "what deleted them (a lifecycle rule shorter than the retention? CloudTrail names who)"
)


def missing_message(backup: str, missing: list[str]) -> str:
    shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
    return (
        f"backup {backup} lacks {len(missing)} object(s) its manifest lists: {shown}; "
        "they were deleted after the backup completed"
    )


def require_objects(bucket: str, keys: layout.BackupKeys, manifest: Manifest | ManifestV2) -> None:
    """Refuse a backup whose objects are not all there, before anything reads it: one
    listing of its stem. A role that may not list is not refused here: a missing object is
    then found when it is read."""
    try:
        present = {obj["Key"] for obj in _listing(bucket, keys.stem)}
    except StorageAccessDeniedError as exc:
        log.info("the backup's objects were not listed ahead (%s): each is checked as read", exc)
        return
    if missing := missing_objects(present, manifest):
        raise ObjectMissingError(
            missing_message(manifest.dump_key, missing) + "; nothing was restored",
            hint=MISSING_HINT,
        )
