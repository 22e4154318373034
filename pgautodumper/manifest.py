"""The manifest: the commit marker of a backup, and what restore trusts.

A dump object without its manifest is not a backup. The manifest is written
last, after the dump object was completed, and records what a reader needs to
check the bytes it gets back (sha256, sizes) and what a verify needs to check
the restored data (exact row counts taken in the dump's own snapshot).

``FORMAT_VERSION`` rule: bump it whenever a field changes meaning or a
required field is added; readers refuse any version they do not know, so an
old tool never misreads a new backup.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pgautodumper.errors import ManifestError

FORMAT_VERSION = 1


class TableRows(BaseModel):
    model_config = ConfigDict(frozen=True)

    schema_name: str = Field(alias="schema")
    table: str
    rows: int

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.table}"


class Compression(BaseModel):
    algorithm: Literal["zstd"] = "zstd"
    level: int
    threads: int


class Manifest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    format_version: int = FORMAT_VERSION
    name: str
    database: str
    run_id: str
    dump_key: str
    manifest_key: str
    stored_bytes: int
    raw_bytes: int
    parts: int
    part_size_bytes: int
    sha256: str
    compression: Compression
    pg_dump_version: str
    server_version: str
    server_version_num: int
    snapshot: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    tool_version: str
    tables: list[TableRows]

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2, by_alias=True).encode()

    def row_counts(self) -> dict[str, int]:
        return {t.qualified: t.rows for t in self.tables}


def parse_manifest(raw: bytes, key: str) -> Manifest:
    """Parse a stored manifest, refusing a format this tool does not know."""
    import json

    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise ManifestError(
            f"manifest {key} is not valid JSON ({exc})",
            hint="the backup cannot be trusted; restore an older one",
        ) from None
    version = document.get("format_version") if isinstance(document, dict) else None
    if version != FORMAT_VERSION:
        raise ManifestError(
            f"manifest {key} has format_version {version!r}; "
            f"this pgautodumper reads only version {FORMAT_VERSION}",
            hint="use the pgautodumper release that wrote it",
        )
    try:
        return Manifest.model_validate(document)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"])) for e in exc.errors())
        raise ManifestError(
            f"manifest {key} is incomplete or invalid (fields: {fields})",
            hint="the backup cannot be trusted; restore an older one",
        ) from None


class VerifiedTable(BaseModel):
    table: str
    expected_rows: int
    restored_rows: int | None

    @property
    def matches(self) -> bool:
        return self.expected_rows == self.restored_rows


class Verdict(BaseModel):
    """Written to ``<backup>.verified.json`` by verify."""

    format_version: int = FORMAT_VERSION
    dump_key: str
    verdict: Literal["passed", "failed"]
    checked_at: datetime
    restore_seconds: float
    sha256_ok: bool
    tables: list[VerifiedTable]
    extra_tables: list[str] = Field(default_factory=list)
    reason: str | None = None
    tool_version: str

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def mismatches(self) -> list[VerifiedTable]:
        return [t for t in self.tables if not t.matches]

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


def parse_verdict(raw: bytes, key: str) -> Verdict:
    try:
        return Verdict.model_validate_json(raw)
    except ValidationError:
        raise ManifestError(
            f"verify verdict {key} is invalid", hint="run 'pgautodumper verify' again"
        ) from None
