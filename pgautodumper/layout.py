"""The storage layout: the only module that builds or parses object keys.

    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.dump.zst             format 1: the dump
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.schema.dump.zst      format 2: pre- and
                                                                          post-data archive
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.data.dump.zst        format 2: the data
                                                                          pg_dump kept
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.part-NNNNN.copy.zst  format 2: one COPY
                                                                          stream (manifest
                                                                          names its table)
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.roles.json.zst       the roles it needs
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.manifest.json        commit marker, written last
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.verified.json        verdict of a verify run
    PREFIX/NAME/YYYY/MM/DD/<UTC timestamp>-<run id>.<task>.outcome.json  why a backup or verify
                                                                          task failed (the task
                                                                          writes it on failure)
    PREFIX/NAME/.lock                                                     per-database run lock

Every object of one backup starts with its stem (``.../<UTC timestamp>-<run id>``)
followed by ``.`` or ``/``: listing and retention group objects by stem.

This layout is a public contract (``LAYOUT_VERSION``): tools and people find
backups by it. Changing it means old repositories need migrating.
"""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, computed_field

from pgautodumper.errors import UsageError

LAYOUT_VERSION = 1
DUMP_SUFFIX = ".dump.zst"
SCHEMA_SUFFIX = ".schema.dump.zst"
DATA_SUFFIX = ".data.dump.zst"
ROLES_SUFFIX = ".roles.json.zst"
MANIFEST_SUFFIX = ".manifest.json"
VERIFIED_SUFFIX = ".verified.json"
OUTCOME_SUFFIX = ".outcome.json"
LOCK_NAME = ".lock"
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$")
_STEM = re.compile(
    r"^(?P<name>[^/]+)/(?P<y>\d{4})/(?P<m>\d{2})/(?P<d>\d{2})/"
    r"(?P<ts>\d{8}T\d{6}Z)-(?P<run>[A-Za-z0-9_-]+)(?P<rest>[./].*)$"
)

TaskName = Literal["backup", "verify"]


class BackupKeys(BaseModel):
    """The keys of one backup, computed here and nowhere else; the stem identifies it.

    Serialized with the computed keys, so the execution history shows them and
    every reader (Record, Prune, Notify, the tasks) takes them as they are.
    """

    model_config = ConfigDict(frozen=True)

    prefix: str
    name: str
    started_at: datetime
    run_id: str

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stem(self) -> str:
        at = self.started_at
        day = f"{at:%Y}/{at:%m}/{at:%d}"
        return f"{name_prefix(self.prefix, self.name)}{day}/{at:{_TIMESTAMP_FORMAT}}-{self.run_id}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def dump(self) -> str:
        return self.stem + DUMP_SUFFIX

    @computed_field  # type: ignore[prop-decorator]
    @property
    def manifest(self) -> str:
        return self.stem + MANIFEST_SUFFIX

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verified(self) -> str:
        return self.stem + VERIFIED_SUFFIX

    @computed_field  # type: ignore[prop-decorator]
    @property
    def schema_archive(self) -> str:
        return self.stem + SCHEMA_SUFFIX

    @computed_field  # type: ignore[prop-decorator]
    @property
    def data_archive(self) -> str:
        return self.stem + DATA_SUFFIX

    @computed_field  # type: ignore[prop-decorator]
    @property
    def roles(self) -> str:
        return self.stem + ROLES_SUFFIX

    def part(self, number: int) -> str:
        """The key of COPY stream ``number`` (1-based); never a table's name."""
        return f"{self.stem}.part-{number:05d}.copy.zst"

    def outcome(self, task: TaskName) -> str:
        """Where a failed task of this backup explains itself."""
        return f"{self.stem}.{task}{OUTCOME_SUFFIX}"

    def owns(self, key: str) -> bool:
        """Whether ``key`` is one of this backup's objects."""
        return key.startswith(self.stem) and key[len(self.stem) : len(self.stem) + 1] in "./"


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
    """The backup any of its objects belongs to; None for keys outside the layout."""
    base = normalize_prefix(prefix)
    if not key.startswith(base):
        return None
    match = _STEM.match(key[len(base) :])
    if not match or len(match["rest"]) < 2:
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
