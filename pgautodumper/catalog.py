"""What is in the store: backups of a name, complete or not, verified or not.

A backup is *complete* when its manifest exists (the commit marker); a dump
object without one is an incomplete leftover that restore and list ignore
and retention may delete.
"""

from __future__ import annotations

from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from pgautodumper import aws, layout, storage
from pgautodumper.errors import BackupNotFoundError, ManifestError
from pgautodumper.manifest import Manifest, Verdict, parse_manifest, parse_verdict


class BackupEntry(BaseModel):
    keys: layout.BackupKeys
    dump_size: int | None = None
    has_dump: bool = False
    has_manifest: bool = False
    has_verdict: bool = False
    last_modified: datetime | None = None

    @property
    def complete(self) -> bool:
        return self.has_dump and self.has_manifest

    def object_keys(self) -> list[str]:
        """Existing objects, manifest first: deleting in this order never leaves
        a manifest that points at a missing dump."""
        keys = [
            (self.has_manifest, self.keys.manifest),
            (self.has_verdict, self.keys.verified),
            (self.has_dump, self.keys.dump),
        ]
        return [key for present, key in keys if present]


def list_backups(bucket: str, prefix: str | None, name: str) -> list[BackupEntry]:
    """Every backup of ``name``, newest first, complete or not."""
    folder = layout.name_prefix(prefix, name)
    entries: dict[str, BackupEntry] = {}
    paginator = aws.client("s3").get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=folder):
            for obj in page.get("Contents", []):
                keys = layout.parse_key(obj["Key"], prefix)
                if keys is None or keys.name != name:
                    continue
                entry = entries.setdefault(keys.stem, BackupEntry(keys=keys))
                if obj["Key"] == keys.dump:
                    entry.has_dump, entry.dump_size = True, obj["Size"]
                    entry.last_modified = obj["LastModified"]
                elif obj["Key"] == keys.manifest:
                    entry.has_manifest = True
                else:
                    entry.has_verdict = True
    except (ClientError, BotoCoreError) as exc:
        raise storage.storage_error(exc, bucket=bucket, key=folder, action="list") from None
    return sorted(entries.values(), key=lambda e: e.keys.started_at, reverse=True)


def read_manifest(bucket: str, keys: layout.BackupKeys) -> Manifest:
    try:
        raw = storage.get(bucket, keys.manifest)
    except BackupNotFoundError:
        raise BackupNotFoundError(
            f"s3://{bucket}/{keys.manifest} does not exist: {keys.dump} is not a complete backup",
            hint="'pgautodumper list' shows complete backups",
        ) from None
    manifest = parse_manifest(raw, keys.manifest)
    if manifest.dump_key != keys.dump:
        raise ManifestError(
            f"manifest {keys.manifest} describes {manifest.dump_key}, not {keys.dump}"
        )
    return manifest


def read_verdict(bucket: str, keys: layout.BackupKeys) -> Verdict | None:
    try:
        return parse_verdict(storage.get(bucket, keys.verified), keys.verified)
    except BackupNotFoundError:
        return None


def latest_complete(bucket: str, prefix: str | None, name: str) -> layout.BackupKeys:
    for entry in list_backups(bucket, prefix, name):
        if entry.complete:
            return entry.keys
    raise BackupNotFoundError(
        f"no complete backup of {name!r} under s3://{bucket}/{layout.name_prefix(prefix, name)}",
        hint="check --name and --prefix; 'pgautodumper list --all' shows incomplete ones",
    )
