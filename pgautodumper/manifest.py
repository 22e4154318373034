"""The manifest: the commit marker of a backup, and what restore trusts.

Objects without their manifest are not a backup. The manifest is written
last, after every object was completed, and records what a reader needs to
check the bytes it gets back (sha256, sizes) and what a verify needs to check
the restored data (exact row counts taken in the dump's own snapshot).

Format 1 is one pg_dump custom-format stream (``<stem>.dump.zst``). Format 2
stores several objects under the backup's stem, each listed with its key,
sha256, stored and raw sizes: the schema archive (pre- and post-data), the
remaining-data archive (small tables, sequences, large objects), one object
per part of each table streamed by COPY (its table, exact column list, range
predicate and row count; keys never name tables), and the roles.

Version rule: ``format_version`` changes whenever a field changes meaning or a
required field is added; readers refuse any version they do not know, so an
old tool never misreads a new backup. This release reads 1 and 2, writes 2.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    computed_field,
)

from pgautodumper.database_locale import DatabaseLocale
from pgautodumper.errors import ManifestError

FORMAT_VERSION = 1  # of format-1 manifests and of verdicts
FORMAT_VERSIONS = (1, 2)  # the manifests this release reads
_DATABASE_LOCALE = (
    "the source database's encoding and locale, which verify creates its scratch database "
    "with (absent in backups older than the field)"
)


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
    """Format 1: one pg_dump custom-format stream."""

    model_config = ConfigDict(populate_by_name=True)

    format_version: Literal[1] = 1
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
    database_locale: DatabaseLocale | None = Field(None, description=_DATABASE_LOCALE)
    tables: list[TableRows]

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2, by_alias=True).encode()

    def row_counts(self) -> dict[str, int]:
        return {t.qualified: t.rows for t in self.tables}


class StoredObject(BaseModel):
    """One object of a format-2 backup, as it was written."""

    key: str
    sha256: str
    stored_bytes: int
    raw_bytes: int


class TablePart(StoredObject):
    """One COPY stream of a table: ``COPY (SELECT <columns> FROM ONLY t [WHERE predicate])``."""

    model_config = ConfigDict(populate_by_name=True)

    schema_name: str = Field(alias="schema")
    table: str
    columns: list[str] = Field(description="the exact column list, in COPY order")
    predicate: str | None = Field(None, description="the range (ctid) of this part, SQL")
    rows: int = Field(description="from COPY's command tag")
    freeze: bool = Field(False, description="the table's only part, not a partition")

    @property
    def qualified(self) -> str:
        return f"{self.schema_name}.{self.table}"


class TableObjects(BaseModel):
    """What belongs to a table beyond its name, for restoring one table: catalog facts."""

    model_config = ConfigDict(populate_by_name=True)

    schema_name: str = Field(alias="schema")
    table: str
    indexes: list[str] = Field(default_factory=list)
    sequences: list[str] = Field(default_factory=list, description="owned (serial, identity)")


class ManifestV2(BaseModel):
    """Format 2: parallel, snapshot-consistent streams under one stem."""

    model_config = ConfigDict(populate_by_name=True)

    format_version: Literal[2] = 2
    name: str
    database: str
    run_id: str
    manifest_key: str
    compression: Compression
    pg_dump_version: str
    server_version: str
    server_version_num: int
    snapshot: str
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    tool_version: str
    jobs: int
    stream_threshold_bytes: int
    schema_archive: StoredObject
    data_archive: StoredObject
    parts: list[TablePart]
    roles: StoredObject | None = None
    relations: list[TableObjects] = Field(default_factory=list)
    extensions: list[str] = Field(
        default_factory=list, description="the extensions a restore needs (plpgsql aside)"
    )
    tablespaces: list[str] = Field(
        default_factory=list,
        description="the tablespaces its tables and indexes are in (a restore needs them, "
        "or --no-tablespaces)",
    )
    collations: list[str] = Field(
        default_factory=list,
        description="the collations of pg_catalog that its objects use (made by initdb from "
        "the operating system's locales)",
    )
    database_locale: DatabaseLocale | None = Field(None, description=_DATABASE_LOCALE)
    tables: list[TableRows]

    def objects(self) -> list[StoredObject]:
        """Every object the backup is made of (the manifest aside)."""
        extra = [self.roles] if self.roles else []
        return [self.schema_archive, self.data_archive, *self.parts, *extra]

    # Computed, and written too: scripts read the same fields from either format.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def dump_key(self) -> str:
        """The backup's main pg_dump archive (what ``--key`` and reports show)."""
        return self.schema_archive.key

    @computed_field  # type: ignore[prop-decorator]
    @property
    def stored_bytes(self) -> int:
        return sum(o.stored_bytes for o in self.objects())

    @computed_field  # type: ignore[prop-decorator]
    @property
    def raw_bytes(self) -> int:
        return sum(o.raw_bytes for o in self.objects())

    @property
    def sha256(self) -> str:
        return self.schema_archive.sha256

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2, by_alias=True).encode()

    def row_counts(self) -> dict[str, int]:
        return {t.qualified: t.rows for t in self.tables}

    def table_names(self) -> set[tuple[str, str]]:
        """(schema, table) of every table the backup holds, counted or not."""
        return {(r.schema_name, r.table) for r in self.relations} | {
            (t.schema_name, t.table) for t in self.tables
        }


AnyManifest = Annotated[Manifest | ManifestV2, Field(discriminator="format_version")]
_ANY_MANIFEST: TypeAdapter[Manifest | ManifestV2] = TypeAdapter(AnyManifest)


def parse_manifest(raw: bytes, key: str) -> Manifest | ManifestV2:
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
    if version not in FORMAT_VERSIONS:
        raise ManifestError(
            f"manifest {key} has format_version {version!r}; this pgautodumper reads "
            f"versions {', '.join(map(str, FORMAT_VERSIONS))}",
            hint="use the pgautodumper release that wrote it",
        )
    try:
        return _ANY_MANIFEST.validate_python(document)
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
    verdict: Literal["passed", "warn", "failed"]
    checked_at: datetime
    restore_seconds: float
    sha256_ok: bool
    tables: list[VerifiedTable]
    extra_tables: list[str] = Field(default_factory=list)
    missing_extensions: list[str] = Field(
        default_factory=list, description="the scratch server could not load them (warn)"
    )
    missing_collations: list[str] = Field(
        default_factory=list, description="the scratch server lacks them: no such locale (warn)"
    )
    unchecked_tables: list[str] = Field(
        default_factory=list,
        description="not restored for lack of those extensions or collations (warn)",
    )
    reason: str | None = None
    tool_version: str

    @property
    def passed(self) -> bool:
        """The backup restores: every table checked matched (a warn checked fewer)."""
        return self.verdict in ("passed", "warn")

    def mismatches(self) -> list[VerifiedTable]:
        return [t for t in self.tables if not t.matches and t.table not in self.unchecked_tables]

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()


def parse_verdict(raw: bytes, key: str) -> Verdict:
    try:
        return Verdict.model_validate_json(raw)
    except ValidationError:
        raise ManifestError(
            f"verify verdict {key} is invalid", hint="run 'pgautodumper verify' again"
        ) from None
