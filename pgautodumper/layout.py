"""The storage layout: the only module that builds or parses object keys.

    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.dump.zst       the dump
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.manifest.json  commit marker, written last
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.verified.json  verdict of a verify run
    PREFIX/NAME/.lock                                               per-database run lock

This layout is a public contract (``LAYOUT_VERSION``): tools and people find
backups by it. Changing it means old repositories need migrating.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from pgautodumper.errors import UsageError

LAYOUT_VERSION = 1
DUMP_SUFFIX = ".dump.zst"
MANIFEST_SUFFIX = ".manifest.json"
VERIFIED_SUFFIX = ".verified.json"
LOCK_NAME = ".lock"
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_STEM = re.compile(
    r"^(?P<name>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<ts>\d{8}T\d{6}Z)-(?P<run>[A-Za-z0-9_-]+)$"
)


class BackupKeys(BaseModel):
    """The keys of one backup run; the stem identifies the backup."""

    model_config = ConfigDict(frozen=True)

    prefix: str
    name: str
    started_at: datetime
    run_id: str

    @property
    def stem(self) -> str:
        at = self.started_at
        day = f"{at:%Y}/{at:%m}/{at:%d}"
        return f"{name_prefix(self.prefix, self.name)}{day}/{at:{_TIMESTAMP_FORMAT}}-{self.run_id}"

    @property
    def dump(self) -> str:
        return self.stem + DUMP_SUFFIX

    @property
    def manifest(self) -> str:
        return self.stem + MANIFEST_SUFFIX

    @property
    def verified(self) -> str:
        return self.stem + VERIFIED_SUFFIX


def normalize_prefix(prefix: str | None) -> str:
    """'' or 'a/b/' — never a leading slash, always a trailing one when set."""
    cleaned = (prefix or "").strip("/")
    return f"{cleaned}/" if cleaned else ""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(
            f"invalid backup name {name!r}",
            hint="use letters, digits, '.', '_' or '-' (at most 128 characters)",
        )
    return name


def name_prefix(prefix: str | None, name: str) -> str:
    """The folder that holds every backup of one name."""
    return f"{normalize_prefix(prefix)}{check_name(name)}/"


def lock_key(prefix: str | None, name: str) -> str:
    return name_prefix(prefix, name) + LOCK_NAME


def new_run_id() -> str:
    return secrets.token_hex(4)


def sanitize_run_id(raw: str) -> str:
    """Turn an execution name or ARN into a run id usable in a key."""
    candidate = re.sub(r"[^A-Za-z0-9_-]", "-", raw.rsplit(":", 1)[-1]).strip("-_")[:80]
    if not _RUN_ID.match(candidate):
        raise UsageError(f"invalid run id {raw!r}", hint="use letters, digits, '_' or '-'")
    return candidate


def backup_keys(
    prefix: str | None, name: str, started_at: datetime | None = None, run_id: str | None = None
) -> BackupKeys:
    at = (started_at or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return BackupKeys(
        prefix=normalize_prefix(prefix),
        name=check_name(name),
        started_at=at,
        run_id=sanitize_run_id(run_id) if run_id else new_run_id(),
    )


def parse_key(key: str, prefix: str | None = None) -> BackupKeys | None:
    """The backup a dump, manifest or verified key belongs to; None for other keys."""
    base = normalize_prefix(prefix)
    if not key.startswith(base):
        return None
    rest = key[len(base) :]
    for suffix in (DUMP_SUFFIX, MANIFEST_SUFFIX, VERIFIED_SUFFIX):
        if rest.endswith(suffix):
            rest = rest[: -len(suffix)]
            break
    else:
        return None
    match = _STEM.match(rest)
    if not match:
        return None
    started_at = datetime.strptime(match["ts"], _TIMESTAMP_FORMAT).replace(tzinfo=UTC)
    return BackupKeys(prefix=base, name=match["name"], started_at=started_at, run_id=match["run"])


def keys_for(key: str) -> BackupKeys:
    """Like :func:`parse_key` for a user-given key, whatever prefix it has."""
    parts = key.strip("/").split("/")
    if len(parts) >= 5:
        prefix = "/".join(parts[:-5])
        parsed = parse_key(key.strip("/"), prefix)
        if parsed is not None:
            return parsed
    raise UsageError(
        f"{key!r} is not a backup key",
        hint="give the .dump.zst or .manifest.json key shown by 'pgautodumper list'",
    )
