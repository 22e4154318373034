"""pgautodumper list: the backups of a name, newest first."""

from __future__ import annotations

import click
from pydantic import BaseModel

from pgautodumper import catalog
from pgautodumper.cli.options import bucket_options, emit, human_bytes, json_option
from pgautodumper.errors import ManifestError


class ListedBackup(BaseModel):
    """One row of ``list --json`` (a stable shape for scripts)."""

    key: str
    started_at: str
    complete: bool
    stored_bytes: int | None
    duration_seconds: float | None
    verified: str
    problem: str | None = None  # its manifest or verdict does not read, or objects are gone
    missing_objects: list[str] = []  # keys its manifest lists that the bucket lacks


@click.command("list")
@bucket_options
@click.option("--name", required=True, help="Backup name.")
@click.option("--all", "show_all", is_flag=True, help="Also incomplete leftovers, flagged.")
@json_option
def command(bucket: str, prefix: str, name: str, show_all: bool, as_json: bool) -> None:
    """Complete backups of NAME (with --all, incomplete leftovers too)."""
    rows = [
        _row(bucket, entry)
        for entry in catalog.list_backups(bucket, prefix, name)
        # A manifest whose main object is gone is a damaged backup, not a leftover: shown.
        if entry.has_manifest or show_all
    ]
    text = "\n".join(
        f"{r.started_at}  {'-' if r.stored_bytes is None else human_bytes(r.stored_bytes):>10}  "
        f"{'' if r.duration_seconds is None else f'{r.duration_seconds:.1f}s':>8}  "
        f"{_column(r):<12}  {r.key}"
        for r in rows
    )
    emit([r.model_dump() for r in rows], as_json, text or f"no backups of {name!r}")


def _data_key(entry: catalog.BackupEntry) -> str:
    """An incomplete backup's main object: format 2's schema archive, or format 1's dump."""
    keys = entry.keys
    return keys.schema_archive if keys.schema_archive in entry.objects else keys.dump


def _column(row: ListedBackup) -> str:
    if row.missing_objects:
        return "MISSING-OBJECTS"
    return "UNREADABLE" if row.problem else row.verified if row.complete else "INCOMPLETE"


def _row(bucket: str, entry: catalog.BackupEntry) -> ListedBackup:
    """One backup; a manifest or verdict that does not read is flagged, not fatal."""
    manifest, verdict, problem = None, None, None
    try:
        manifest = catalog.read_manifest(bucket, entry.keys) if entry.has_manifest else None
        verdict = catalog.read_verdict(bucket, entry.keys) if entry.has_verdict else None
    except ManifestError as exc:
        problem = exc.message
    missing = catalog.missing_objects(entry.objects, manifest) if manifest else []
    if missing:
        problem = catalog.missing_message(manifest.dump_key, missing)
    return ListedBackup(
        key=manifest.dump_key if manifest else _data_key(entry),
        started_at=entry.keys.started_at.isoformat(),
        complete=entry.complete,
        stored_bytes=manifest.stored_bytes if manifest else entry.stored_bytes,
        duration_seconds=manifest.duration_seconds if manifest else None,
        verified=verdict.verdict if verdict else "unverified",
        problem=problem,
        missing_objects=missing,
    )
