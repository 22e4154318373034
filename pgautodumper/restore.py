"""Restore: S3 ─▶ sha256 + size check ─▶ zstd ─▶ pg_restore, no data-sized disk.

This module restores format 1 (one pg_dump stream) and hands format 2 to
parallel_restore.py; both refuse a target that holds objects unless --clean.

The last compressed chunk is held back until the whole object's size and
sha256 match the manifest, so pg_restore never sees the end of a corrupt or
truncated archive and cannot report success on one.

A corrupt archive usually makes pg_restore fail first ("out of memory" for a
garbage length): when it stops reading, or the bytes do not decompress, the
rest of the object is still read and hashed, and bytes that differ from the
manifest are reported as what they are, a corrupt backup.

pg_restore runs with PGOPTIONS settings (connection.restore_settings): the
target's role or database may set timeouts a pg_restore older than the server
does not know to reset, or a read-only default.
"""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import zstandard
from pydantic import BaseModel, Field

from pgautodumper import catalog, layout, lock_watch, toc
from pgautodumper.checked import listed_object
from pgautodumper.child import ToolProcess
from pgautodumper.connection import (
    ConnectionInfo,
    connect,
    refused_for_lack_of_slots,
    restore_settings,
)
from pgautodumper.database_locale import (
    collations_need_encoding,
    create_target_hint,
    database_encoding,
    warn_if_unlike,
)
from pgautodumper.database_properties import AppliedProperties
from pgautodumper.errors import (
    COLLATIONS_HINT,
    INCOMPLETE_TARGET,
    TABLESPACES_HINT,
    ChecksumMismatchError,
    ConnectionLimitError,
    DatabaseError,
    DatabaseNotFoundError,
    EncodingMismatchError,
    MissingCollationsError,
    MissingExtensionsError,
    MissingRolesError,
    MissingTablespacesError,
    OwnershipError,
    PgautodumperError,
    RestoreFailedError,
    StorageError,
    SuperuserRequiredError,
    TargetDiskFullError,
    TargetNotEmptyError,
    TargetPermissionError,
    UsageError,
    redact,
)
from pgautodumper.manifest import Manifest, ManifestV2, StoredObject
from pgautodumper.parallel_restore import (
    USER_RELATIONS,
    RestoreOptions,
    from_stream,
    refuse_older_target,
    refuse_read_only,
    restore_format2,
    run_drops,
)
from pgautodumper.pgtools import find_tool
from pgautodumper.roles import CreatedRoles
from pgautodumper.server_gone import went_away

log = logging.getLogger(__name__)


class RestoreResult(BaseModel):
    dump_key: str
    database: str
    stored_bytes: int
    sha256: str
    seconds: float
    format_version: int = 1
    tables: list[str] = Field(default_factory=list, description="what a partial restore restored")
    parts: int = 0
    phases: dict[str, float] = Field(
        default_factory=dict, description="seconds of pre-data, data and post-data (format 2)"
    )
    roles: CreatedRoles | None = Field(None, description="what --with-roles created")
    database_properties: AppliedProperties | None = Field(
        None, description="the database's settings, grants, comment and owner (format 2)"
    )


def resolve(
    bucket: str, prefix: str | None, *, key: str | None, name: str | None
) -> layout.BackupKeys:
    """The backup named by ``--key`` or the latest complete one of ``--name``."""
    if key:
        return layout.keys_for(key)
    assert name
    return catalog.latest_complete(bucket, prefix, name)


class Target(BaseModel):
    dbname: str
    server_version_num: int
    encoding: str


def inspect_target(target: ConnectionInfo, *, clean: bool) -> Target:
    """The target's name and version, after refusing one that holds objects (unless clean)."""
    with connect(target) as conn:
        dbname = conn.info.dbname
        version = conn.info.server_version
        try:
            refuse_read_only(conn, target.describe())
            row = conn.execute(USER_RELATIONS).fetchone()
            encoding = database_encoding(conn)
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot inspect the target database {dbname} on {target.describe()}: "
                f"{redact(str(exc), target.secret_values()).strip()}",
                hint="check that the role may connect to and read the target's catalog",
            ) from None
    if row and row[0] and not clean:
        raise TargetNotEmptyError(
            f"target database {dbname} on {target.describe()} is not empty ({row[0]} relations)",
            hint="restore into an empty database, or pass --clean to drop and replace objects",
        )
    return Target(dbname=dbname, server_version_num=version, encoding=encoding)


def target_database(target: ConnectionInfo, *, clean: bool) -> str:
    """The target's name, after refusing one that holds objects (unless clean)."""
    return inspect_target(target, clean=clean).dbname


def pg_restore_argv(path: str, dbname: str, options: RestoreOptions) -> list[str]:
    """Format 1's pg_restore (its --clean drops ran before: _drop_format1)."""
    return [path, "--exit-on-error", "-w", f"--dbname={dbname}", *options.leave_out_flags]


def restore(
    bucket: str, keys: layout.BackupKeys, target: ConnectionInfo, options: RestoreOptions
) -> RestoreResult:
    """Restore a backup of either format into ``target``; every lock wait is bounded."""
    manifest = catalog.read_manifest(bucket, keys)
    catalog.require_objects(bucket, keys, manifest)
    if options.partial and not isinstance(manifest, ManifestV2):
        raise UsageError(
            f"restoring single tables or schemas needs a format-2 backup; {keys.dump} is "
            "format 1 (one pg_dump stream)",
            hint="restore it whole into a scratch database and copy the table from there, "
            "or take a new backup (format 2 is the default)",
        )
    try:
        with lock_watch.watching(target, options.lock_wait_timeout_seconds) as watch:
            try:
                return _restore(bucket, keys, manifest, watch.target, options)
            except (RestoreFailedError, DatabaseError) as exc:
                raise _cause(exc, watch, target, manifest) from None
            except StorageError as exc:
                # S3 failed mid-way (past botocore's retries): what was loaded stays.
                hint = f"{exc.hint}; then {INCOMPLETE_TARGET}" if exc.hint else INCOMPLETE_TARGET
                raise type(exc)(exc.message, hint=hint) from None
    except DatabaseNotFoundError as exc:
        name = target.params.get("dbname") or "NAME"
        raise DatabaseNotFoundError(
            exc.message,
            hint=f"a restore goes into a database that exists: create it first (createdb "
            f"--template=template0 {name}), then run the restore again",
        ) from None


def _cause(
    exc: RestoreFailedError | DatabaseError,
    watch: lock_watch.LockWatch,
    target: ConnectionInfo,
    backup: Manifest | ManifestV2,
) -> PgautodumperError:
    """What a failed restore reports: a lock wait it cancelled, what the target lacks, the
    target going away (restarted, crashed, unreachable, or a broken link), or the failure."""
    if watch.expired is not None:
        return watch.expired
    if isinstance(exc, RestoreFailedError) and (named := named_cause(exc, target, backup)):
        named.on_intact_bytes = True
        return named
    if watch.server_life and (
        gone := went_away(
            target,
            [exc],
            before=watch.server_life,
            during=f"the restore into {watch.database}",
            hint=INCOMPLETE_TARGET,
        )
    ):
        return gone
    return exc


def _restore(
    bucket: str,
    keys: layout.BackupKeys,
    manifest: Manifest | ManifestV2,
    target: ConnectionInfo,
    options: RestoreOptions,
) -> RestoreResult:
    if isinstance(manifest, ManifestV2):
        started = time.monotonic()
        outcome = restore_format2(bucket, manifest, target, options)
        return RestoreResult(
            dump_key=manifest.dump_key,
            database=outcome.database,
            stored_bytes=manifest.stored_bytes,
            sha256=manifest.sha256,
            seconds=round(time.monotonic() - started, 3),
            format_version=2,
            tables=outcome.tables,
            parts=outcome.parts,
            phases=outcome.phases,
            roles=outcome.roles,
            database_properties=outcome.database_properties,
        )
    result = _restore_format1(bucket, keys, manifest, target, options)
    if options.analyze:
        analyze(target)
    return result


_MISSING_ROLE = re.compile(r'role "([^"]+)" does not exist')
# PostgreSQL 15 says "must be member of role", 16 and later "must be able to SET ROLE".
_NOT_MEMBER = re.compile(r'must be (?:member of role|able to SET ROLE) "([^"]+)"')


# A character the target's encoding cannot hold (a SQL_ASCII backup converts to nothing:
# its bytes are stored unchecked, as warn_if_unlike says before the restore).
_UNFIT_ENCODING = re.compile(r'in encoding "([^"]+)" has no equivalent in encoding "([^"]+)"')
# ENOSPC, as the server words it ("could not extend file ...: No space left on device").
_DISK_FULL = re.compile(r"No space left on device")
_EXTENSION_DENIED = re.compile(r'permission denied to create extension "([^"]+)"')
# Objects only a superuser may create, as PostgreSQL 15 to 18 word the refusal.
_SUPERUSER_ONLY = re.compile(
    r"permission denied to create (?P<kind>event trigger|foreign-data wrapper|subscription)"
    r'(?: "(?P<name>[^"]+)")?'
    r"|must be superuser to create (?P<what>subscriptions|text search \w+|an operator \w+)"
    r"|permission denied for language (?P<language>\w+)"
)
# CREATE in a schema or a database the role has no CREATE privilege on (PostgreSQL
# names them unquoted: "permission denied for schema public").
_CREATE_DENIED = re.compile(r"permission denied for (schema|database) (.+?)(?= \| |$)")
# The statement that met it, when it gives an object to another role: then that role, not
# the restoring one, lacks CREATE on the schema (ALTER ... OWNER TO needs the new owner to
# have it, unless a superuser runs it).
_OWNER_CHANGE = re.compile(
    r'Command was: ALTER (?P<what>.+?) OWNER TO (?P<role>"(?:[^"]|"")+"|[^\s;"]+);'
)
# A DROP (--clean) or an ALTER of an object another role owns in the target.
_NOT_OWNER = re.compile(r"must be owner of (.+?)(?= \| |$)")
_MISSING_TABLESPACE = re.compile(r'[Tt]ablespace "([^"]+)" does not exist')
# A collation of pg_catalog the server lacks, or a CREATE COLLATION's locale.
_MISSING_COLLATION = re.compile(
    r'collation "(?P<name>[^"]+)" for encoding "(?P<encoding>[^"]+)" does not exist'
    r'|could not create locale "(?P<locale>[^"]+)"'
)


def named_cause(
    exc: RestoreFailedError, target: ConnectionInfo, backup: Manifest | ManifestV2
) -> DatabaseError | None:
    """What the target lacks, named from pg_restore's error: a free session slot, a role,
    membership in one, a tablespace, a collation, an encoding like the backup's, disk
    space."""
    locale = backup.database_locale
    if _DISK_FULL.search(exc.message):
        return TargetDiskFullError(
            f"the restore target {target.describe()} ran out of disk space ({exc.message})",
            hint=f"the backup holds {backup.raw_bytes / 2**30:.2f} GiB before indexes: give "
            "the target's storage room for that and the indexes, then restore again into an "
            "empty database or with --clean",
        )
    if refused_for_lack_of_slots(exc.message):
        return ConnectionLimitError(
            f"{target.describe()} refused a session of the restore ({exc.message})",
            hint="restore again with fewer --jobs, end idle sessions, or raise that limit",
        )
    if space := _MISSING_TABLESPACE.search(exc.message):
        return MissingTablespacesError(
            f"the restore target {target.describe()} has no tablespace {space[1]!r}, which "
            f"the backup puts tables or indexes in ({exc.message})",
            hint=TABLESPACES_HINT,
        )
    if collation := _MISSING_COLLATION.search(exc.message):
        if locale and collation["encoding"] and collation["encoding"] != locale.encoding:
            return collations_need_encoding(
                target.describe(), [collation["name"]], collation["encoding"], locale.encoding
            )
        return MissingCollationsError(
            f"the restore target {target.describe()} lacks the collation or locale "
            f"{collation['name'] or collation['locale']!r}, which the backup's columns or "
            f"indexes use ({exc.message})",
            hint=COLLATIONS_HINT,
        )
    if unfit := _UNFIT_ENCODING.search(exc.message):
        source, target_encoding = unfit.groups()
        return EncodingMismatchError(
            f"the restore target {target.describe()} is a {target_encoding} database, which "
            f"has no room for characters of the backup's {source} rows ({exc.message})",
            hint=create_target_hint(f"ENCODING '{source}'"),
        )
    if extension := _EXTENSION_DENIED.search(exc.message):
        return MissingExtensionsError(
            f"the restoring role may not create extension {extension[1]!r} on "
            f"{target.describe()}: only a superuser may ({exc.message})",
            hint="restore as a superuser (on RDS and Aurora, as the master user, who may create "
            "the extensions they offer); or have a superuser create the database and the "
            "extension, and restore as the database's owner with --no-owner",
        )
    if privileged := _SUPERUSER_ONLY.search(exc.message):
        return SuperuserRequiredError(
            f"only a superuser may create {_privileged_object(privileged)}, which the backup "
            f"holds, on {target.describe()} ({exc.message})",
            hint="restore as a superuser (on RDS and Aurora, the master user, where the service "
            "allows that object), or drop it from the source if nothing needs it; "
            + INCOMPLETE_TARGET,
        )
    if denied := _CREATE_DENIED.search(exc.message):
        kind, name = denied.groups()
        if kind == "schema" and (change := _OWNER_CHANGE.search(exc.message)):
            owner = toc.unquoted(change["role"])
            return TargetPermissionError(
                f"role {owner!r}, to which the backup gives {change['what']}, lacks CREATE on "
                f"schema {name} in {target.describe()}: a role that is not a superuser may give "
                f"an object only to a role that may create it there ({exc.message})",
                hint=f"have the owner of schema {name} run GRANT CREATE ON SCHEMA {name} TO "
                f"{change['role']}, then restore again into an empty "
                "database; or restore as a superuser, or with --no-owner",
            )
        role = target.params.get("user") or "the restoring role"
        privileges = "USAGE, CREATE" if kind == "schema" else "CREATE"
        return TargetPermissionError(
            f"the restoring role may not create objects in {kind} {name} on "
            f"{target.describe()} ({exc.message})",
            hint=f"restore as the database's owner or a superuser, or have the owner of {name} "
            f"run GRANT {privileges} ON {kind.upper()} {name} TO {role}; then " + INCOMPLETE_TARGET,
        )
    if owned := _NOT_OWNER.search(exc.message):
        remedy = "have its owner drop it first"
        if owned[1].startswith("extension "):
            # Created ahead by a superuser, as MissingExtensionsError advises: pg_restore
            # then fails on the backup's COMMENT ON EXTENSION (format 2 leaves it out).
            remedy = "take a format-2 backup, whose restore leaves that comment out"
        return TargetPermissionError(
            f"the restoring role may not drop or change {owned[1]} on {target.describe()}: "
            f"only its owner or a superuser may ({exc.message})",
            hint=f"restore as the owner of {owned[1]} or a superuser, or {remedy}; then "
            + INCOMPLETE_TARGET,
        )
    if member := _NOT_MEMBER.search(exc.message):
        return OwnershipError(
            f"the restoring role may not give objects to role {member[1]!r} on "
            f"{target.describe()} ({exc.message})",
            hint=f"restore as a superuser or a member of {member[1]}, or with --no-owner",
        )
    match = _MISSING_ROLE.search(exc.message)
    if match is None:
        return None
    return MissingRolesError(
        f"the restore target {target.describe()} lacks role {match[1]!r}, which the backup's "
        f"objects are owned by or granted to ({exc.message})",
        hint="pass --with-roles to create the backup's roles (format 2), create the role "
        "yourself, or restore with --no-owner",
    )


def _privileged_object(found: re.Match[str]) -> str:
    if found["language"]:
        return f"functions in language {found['language']}"
    if found["kind"]:
        return f"{found['kind']} {found['name']!r}" if found["name"] else f"a {found['kind']}"
    return found["what"]


def analyze(target: ConnectionInfo) -> None:
    with connect(target, writable=True) as conn:
        try:
            conn.execute("ANALYZE")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"ANALYZE after the restore failed on {target.describe()}: "
                f"{redact(str(exc), target.secret_values()).strip()}",
                hint="the data is restored; run ANALYZE yourself",
            ) from None


def _restore_format1(
    bucket: str,
    keys: layout.BackupKeys,
    manifest: Manifest,
    target: ConnectionInfo,
    options: RestoreOptions,
) -> RestoreResult:
    checked = inspect_target(target, clean=options.clean)
    dbname = checked.dbname
    refuse_older_target(manifest, checked.server_version_num, target.describe())
    warn_if_unlike(manifest.database_locale, checked.encoding, target.describe())
    tool = find_tool("pg_restore", _major(manifest.pg_dump_version))
    env = target.libpq_env(settings=restore_settings(checked.server_version_num))
    started = time.monotonic()
    log.info("restore %s -> %s (%s %s)", keys.dump, dbname, tool.name, tool.version)
    if options.clean:
        _drop_format1(bucket, manifest, str(tool.path), env, dbname, target.secret_values())
    process = ToolProcess(
        pg_restore_argv(str(tool.path), dbname, options),
        env,
        stdin=subprocess.PIPE,
        secrets=target.secret_values(),
    )
    try:
        if not feed_dump(process, listed_object(bucket, keys.dump, "the dump"), manifest):
            # pg_restore stopped reading, on bytes that match the manifest: its own failure.
            process.wait()
            raise RestoreFailedError(
                f"restore of {keys.dump} into {dbname} failed: {process.failure()}",
                hint=INCOMPLETE_TARGET,
            )
    except BaseException:
        process.kill()
        raise
    if process.wait() != 0:
        raise RestoreFailedError(
            f"restore of {keys.dump} into {dbname} failed: {process.failure()}",
            hint=INCOMPLETE_TARGET,
        )
    return RestoreResult(
        dump_key=keys.dump,
        database=dbname,
        stored_bytes=manifest.stored_bytes,
        sha256=manifest.sha256,
        seconds=round(time.monotonic() - started, 3),
    )


def _drop_format1(
    bucket: str, manifest: Manifest, pg_restore: str, env: dict[str, str], dbname: str,
    secrets: list[str],
) -> None:  # fmt: skip
    """--clean's drops, ahead of the restore, as format 2 runs them (toc.to_drop): both
    read from the start of the dump's stream, which holds its TOC."""
    dump = StoredObject(
        key=manifest.dump_key, sha256=manifest.sha256,
        stored_bytes=manifest.stored_bytes, raw_bytes=manifest.raw_bytes,
    )  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="pgad-clean-") as workdir:
        folder = Path(workdir)
        entries = from_stream(
            bucket, dump, "the dump",
            lambda chunks: toc.list_stream(pg_restore, env, chunks, folder / "dump.toc"),
        )  # fmt: skip
        listed = toc.write_list(folder / "drop.list", toc.to_drop(entries, entries))
        script = from_stream(
            bucket, dump, "the dump",
            lambda chunks: toc.drop_script_stream(
                pg_restore, env, chunks, listed, folder / "drop.sql"
            ),
        )  # fmt: skip
    run_drops(
        script, _major(manifest.pg_dump_version), env, dbname,
        secrets=secrets, partial=False, dump_key=manifest.dump_key,
    )  # fmt: skip


def _major(version: str) -> int:
    return int(version.split(".", 1)[0])


# Why writing stopped, when it was not the bytes: pg_restore exited or closed stdin.
_PG_RESTORE_STOPPED = "pg_restore stopped reading"


def feed_dump(process: ToolProcess, chunks: Iterator[bytes], manifest: Manifest) -> bool:
    """Format 1: decompress verified bytes into pg_restore, holding back the last chunk.

    Returns False when pg_restore stopped reading before the end (on bytes that
    match the manifest); raises :class:`ChecksumMismatchError` when the bytes
    differ from it, whatever pg_restore did with them meanwhile.
    """
    digest = hashlib.sha256()
    size = 0
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    pending: bytes | None = None
    # Once writing stops (pg_restore gone, or undecodable bytes) the rest is
    # still read and hashed: the checksum decides what the failure was.
    stopped: str | None = None
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
        if size > manifest.stored_bytes:
            break
        if pending is not None and stopped is None:
            stopped = _write(process, decompressor, pending)
        pending = chunk
    _check_stored(manifest, size, digest.hexdigest())
    if pending is not None and stopped is None:
        stopped = _write(process, decompressor, pending)
    if stopped == _PG_RESTORE_STOPPED:
        return False
    if stopped is not None or not decompressor.eof:
        # The stored bytes are the ones the backup wrote, yet they do not decode:
        # the dump was damaged before its checksum was taken.
        what = f"zstd: {stopped}" if stopped else "its zstd stream is unterminated"
        raise ChecksumMismatchError(
            f"the checksum matches the manifest, but the backup {manifest.dump_key} is "
            f"corrupt ({what})",
            hint=INCOMPLETE_TARGET,
        )
    try:
        process.stdin.close()
    except BrokenPipeError:
        return False
    return True


def _write(process: ToolProcess, decompressor, chunk: bytes) -> str | None:
    """Feed one chunk; the reason writing must stop, or None."""
    try:
        data = decompressor.decompress(chunk)
    except zstandard.ZstdError as exc:
        return str(exc)
    try:
        process.stdin.write(data)
    except BrokenPipeError:
        return _PG_RESTORE_STOPPED
    return None


def _check_stored(manifest: Manifest, size: int, sha256: str) -> None:
    if size != manifest.stored_bytes:
        more = "more than " if size > manifest.stored_bytes else ""
        raise ChecksumMismatchError(
            f"checksum mismatch: the backup {manifest.dump_key} is corrupt: it has "
            f"{more}{size} bytes, the manifest records {manifest.stored_bytes} "
            "(truncated or replaced)",
            hint=INCOMPLETE_TARGET,
        )
    if sha256 != manifest.sha256:
        raise ChecksumMismatchError(
            f"checksum mismatch: the backup {manifest.dump_key} is corrupt: its sha256 is "
            f"{sha256}, the manifest records {manifest.sha256}",
            hint=INCOMPLETE_TARGET,
        )
