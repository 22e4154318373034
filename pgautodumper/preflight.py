"""Preflight: everything that would break the dump at 3 AM, checked before it starts.

Each check is a plain function over a connection (or the bucket), so the
Preflight Lambda and ``pgautodumper preflight`` run the same code:

- connect (classified: :class:`PreflightConnectionError` is retryable,
  :class:`PreflightAuthError` and ``DatabaseNotFoundError`` are not);
- server version, database size, whether the server is a replica;
- every table, sequence, large object and schema the role cannot read —
  pg_dump stops at the first one, so all of them are named at once
  (:class:`PreflightPermissionError`);
- every table whose row-level security would apply to the role: pg_dump
  reads with row_security off, so it would fail on it (:class:`RowSecurityError`);
- transactions older than a minute that hold table locks (a warning: the
  dump would wait for them, then fail with ``LockTimeoutError``);
- the pg_dump major for the dump task and the first part size;
- the bucket is writable (the lock write, or a probe object from the CLI).
"""

from __future__ import annotations

import logging
import os
import secrets as token
from collections.abc import Sequence

import psycopg
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from pgautodumper import aws, blockers, catalog, layout, lock, pgtools, storage, tls
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.contract import (
    ConnectionTarget,
    ExecutionContext,
    ExecutionDocument,
    PreflightResult,
    TaskInput,
)
from pgautodumper.errors import (
    DatabaseAuthError,
    DatabaseUnreachableError,
    PgVersionMismatchError,
    PreflightAuthError,
    PreflightConnectionError,
    PreflightPermissionError,
    RowSecurityError,
    redact,
)
from pgautodumper.secrets import fetch_secret
from pgautodumper.snapshot import REPLICA_ADVICE, ServerInfo, server_info

log = logging.getLogger(__name__)

# The pg_dump majors in the dump task's image; the Lambda cannot look, so it is told.
PG_DUMP_MAJORS_ENV = "PGAUTODUMPER_PG_DUMP_MAJORS"
# The postgresql-client-* majors in task_image/Dockerfile (a test keeps them equal).
DEFAULT_PG_DUMP_MAJORS = (13, 14, 15, 16, 17, 18)
# A lock older than the task timeouts plus this margin belongs to a dead execution.
LOCK_MARGIN_SECONDS = 3600
MAX_LISTED = 50  # unreadable objects named in one message; the rest are counted
LONG_TRANSACTION_SECONDS = 60  # older transactions holding table locks are warned about

REPLICA_WARNING = (
    "the server is a replica (pg_is_in_recovery): a long dump can be cancelled by "
    f"recovery conflicts; {REPLICA_ADVICE}"
)


_SYSTEM_SCHEMAS = (
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%'"
)
# Objects that belong to an extension are recreated by CREATE EXTENSION, not dumped.
_NOT_EXTENSION_MEMBER = (
    "NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass "
    "AND d.objid = {oid} AND d.deptype = 'e')"
)
_UNREADABLE_SCHEMAS = f"""
SELECT 'schema ' || quote_ident(n.nspname)
FROM pg_namespace n
WHERE {_SYSTEM_SCHEMAS} AND NOT has_schema_privilege(n.oid, 'USAGE')
  AND {_NOT_EXTENSION_MEMBER.format(catalog="pg_namespace", oid="n.oid")}
ORDER BY n.nspname
"""
# pg_dump locks every table (ACCESS SHARE needs SELECT) and reads every sequence.
_UNREADABLE_RELATIONS = f"""
SELECT CASE WHEN c.relkind = 'S' THEN 'sequence ' ELSE 'table ' END
       || quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_SYSTEM_SCHEMAS} AND c.relkind IN ('r', 'p', 'S')
  AND {_NOT_EXTENSION_MEMBER.format(catalog="pg_class", oid="c.oid")}
  AND NOT CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
               ELSE has_table_privilege(c.oid, 'SELECT') END
ORDER BY n.nspname, c.relname
"""
# pg_dump (and every stream of ours) reads with row_security off: a table whose policies
# apply to the role then raises instead of hiding rows. They apply unless the role is a
# superuser or BYPASSRLS, or has its owner's privileges on a table that does not FORCE them.
_ROW_SECURITY_APPLIES = f"""
SELECT 'table ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_SYSTEM_SCHEMAS} AND c.relkind = 'r' AND c.relrowsecurity
  AND NOT (SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user)
  AND (c.relforcerowsecurity OR NOT pg_has_role(current_user, c.relowner, 'USAGE'))
ORDER BY n.nspname, c.relname
"""
# has_largeobject_privilege() only exists from PostgreSQL 17; before, read the ACL.
_UNREADABLE_LARGE_OBJECTS_17 = """
SELECT 'large object ' || m.oid FROM pg_largeobject_metadata m
WHERE NOT has_largeobject_privilege(m.oid, 'SELECT') ORDER BY m.oid
"""
_UNREADABLE_LARGE_OBJECTS = """
SELECT 'large object ' || m.oid FROM pg_largeobject_metadata m
WHERE NOT (
    (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
    OR current_setting('lo_compat_privileges')::bool
    OR pg_has_role(current_user, m.lomowner, 'USAGE')
    OR EXISTS (
        SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
        WHERE a.privilege_type = 'SELECT'
          AND (a.grantee = 0 OR pg_has_role(current_user, a.grantee, 'USAGE'))))
ORDER BY m.oid
"""


def unreadable_objects(conn: psycopg.Connection, server_version_num: int) -> list[str]:
    """Every schema, table, sequence and large object pg_dump would fail to read."""
    large_objects = (
        _UNREADABLE_LARGE_OBJECTS_17 if server_version_num >= 170000 else _UNREADABLE_LARGE_OBJECTS
    )
    found: list[str] = []
    for query in (_UNREADABLE_SCHEMAS, _UNREADABLE_RELATIONS, large_objects):
        found.extend(row[0] for row in conn.execute(query))
    return found


def check_readable(conn: psycopg.Connection, facts: ServerInfo, *, database: str) -> None:
    missing = unreadable_objects(conn, facts.server_version_num)
    if not missing:
        return
    user = conn.info.user
    raise PreflightPermissionError(
        f"role {user!r} cannot read {len(missing)} object(s) in {database}, "
        f"so pg_dump would fail: {_listed(missing)}",
        hint=f"GRANT SELECT (tables, sequences, large objects) and USAGE (schemas) to {user}, "
        "e.g. GRANT pg_read_all_data TO it (PostgreSQL 14+)",
    )


def check_row_security(conn: psycopg.Connection, *, database: str) -> None:
    hidden = [row[0] for row in conn.execute(_ROW_SECURITY_APPLIES)]
    if not hidden:
        return
    user = conn.info.user
    raise RowSecurityError(
        f"row-level security would hide rows of {len(hidden)} table(s) in {database} from "
        f"role {user!r}, so pg_dump would fail: {_listed(hidden)}",
        hint=f"ALTER ROLE {user} BYPASSRLS (a backup holds every row or none, as pg_dump)",
    )


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - MAX_LISTED} more" if len(names) > MAX_LISTED else ""
    return ", ".join(names[:MAX_LISTED]) + more


def task_pg_dump_majors() -> tuple[int, ...]:
    raw = os.environ.get(PG_DUMP_MAJORS_ENV, "")
    majors = tuple(sorted(int(m) for m in raw.split(",") if m.strip().isdigit()))
    return majors or DEFAULT_PG_DUMP_MAJORS


def choose_pg_dump_major(server_version_num: int, available: Sequence[int]) -> int:
    """The oldest available pg_dump major that can dump this server (>= its major)."""
    major = pgtools.server_major(server_version_num)
    usable = sorted(m for m in available if m >= major)
    if not usable:
        raise PgVersionMismatchError(
            f"no pg_dump can handle PostgreSQL {major}: the dump task has "
            f"{', '.join(map(str, available)) or 'none'}",
            hint=f"add postgresql-client-{major} to the task image and to {PG_DUMP_MAJORS_ENV}",
        )
    return usable[0]


class Inspection(BaseModel):
    facts: ServerInfo
    warnings: list[str]


def inspect(info: ConnectionInfo) -> Inspection:
    """Connect, read the server facts, check every object is readable, look for trouble."""
    try:
        with connect(info) as conn:
            facts = server_info(conn)
            check_readable(conn, facts, database=info.describe())
            check_row_security(conn, database=info.describe())
            warnings = [REPLICA_WARNING] if facts.is_replica else []
            # A migration's long transaction can make the dump wait, then fail by name.
            warnings += blockers.long_lock_holders(conn, LONG_TRANSACTION_SECONDS)
            return Inspection(facts=facts, warnings=warnings)
    except DatabaseAuthError as exc:
        raise PreflightAuthError(exc.message, hint=exc.hint) from None
    except DatabaseUnreachableError as exc:
        raise PreflightConnectionError(exc.message, hint=exc.hint) from None
    except psycopg.Error as exc:
        # A statement failing after connect (a dropped connection, a timeout) is transient.
        raise PreflightConnectionError(
            f"preflight query on {info.describe()} failed: "
            f"{redact(str(exc), info.secret_values()).strip()}",
            hint="retry; check the server's health",
        ) from None


def check_bucket_writable(bucket: str, prefix: str | None, name: str) -> None:
    """Put and delete a probe object under the name's folder (the CLI's check)."""
    key = f"{layout.name_prefix(prefix, name)}.preflight-{token.token_hex(6)}"
    s3 = aws.client("s3")
    try:
        s3.put_object(Bucket=bucket, Key=key, Body=b"pgautodumper preflight probe\n")
        s3.delete_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise storage.storage_error(exc, bucket=bucket, key=key, action="probe write") from None


def task_input(
    facts: ServerInfo, document: ExecutionDocument, target: ConnectionTarget, pg_dump_major: int
) -> TaskInput:
    """What this run's tasks get: computed here once, from the request and the server."""
    request, execution = document.request, document.require("execution")
    return TaskInput(
        bucket=request.bucket,
        keys=layout.backup_keys(
            request.prefix, request.name, execution.start_time, execution.run_id
        ),
        run_id=execution.run_id,
        secret_arn=target.secret_arn,
        secret_version_id=target.secret_version_id,
        sslmode=request.sslmode,
        ssl_root_cert=request.ssl_root_cert,
        pg_dump_major=pg_dump_major,
        part_size_bytes=storage.initial_part_size(facts.database_size_bytes),
        jobs=request.jobs or request.task.vcpus,
        lock_wait_timeout_seconds=request.lock_wait_timeout_seconds,
        stream_threshold_bytes=request.stream_threshold_bytes,
    )


def verify_only(document: ExecutionDocument) -> PreflightResult:
    """Mode 'verify': the newest complete backup of the name, as the Verify task's input.

    Nothing touches the database and no lock is taken: a verify of an existing
    backup (in the vault, say) may run beside that database's own backups.
    """
    request = document.request
    execution: ExecutionContext = document.require("execution")
    target: ConnectionTarget = document.require("target")
    keys = catalog.latest_complete(request.bucket, request.prefix, request.name)
    manifest = catalog.read_manifest(request.bucket, keys)
    log.info("%s: verifying s3://%s/%s", request.name, request.bucket, keys.manifest)
    return PreflightResult(
        server_version=manifest.server_version,
        server_version_num=manifest.server_version_num,
        database_size_bytes=manifest.raw_bytes,
        is_replica=False,
        lock_key=layout.lock_key(request.prefix, request.name),
        sizing=request.task,
        task=TaskInput(
            bucket=request.bucket,
            keys=keys,
            run_id=execution.run_id,
            secret_arn=target.secret_arn,
            secret_version_id=target.secret_version_id,
            jobs=request.jobs or request.task.vcpus,
        ),
    )


def run(document: ExecutionDocument) -> PreflightResult:
    """The Preflight Lambda: checks on the pinned secret version, then the lock."""
    request = document.request
    if request.mode == "verify":
        return verify_only(document)
    target: ConnectionTarget = document.require("target")
    execution: ExecutionContext = document.require("execution")
    secret = fetch_secret(target.secret_arn, target.secret_version_id)
    info = secret.connection(
        sslmode=request.sslmode, **tls.root_cert_params(request.sslmode, request.ssl_root_cert)
    )
    inspection = inspect(info)
    facts, warnings = inspection.facts, inspection.warnings
    major = choose_pg_dump_major(facts.server_version_num, task_pg_dump_majors())
    for warning in warnings:
        log.warning("%s: %s", request.name, warning)
    result = PreflightResult(
        server_version=facts.server_version,
        server_version_num=facts.server_version_num,
        database_size_bytes=facts.database_size_bytes,
        is_replica=facts.is_replica,
        warnings=warnings,
        lock_key=layout.lock_key(request.prefix, request.name),
        sizing=request.task,
        task=task_input(facts, document, target, major),
    )
    # The lock write doubles as the bucket-writable check (same folder, same role).
    max_run = 2 * request.task.timeout_seconds + LOCK_MARGIN_SECONDS
    lock.acquire(
        request.bucket, request.prefix, request.name, execution.id, max_run_seconds=max_run
    )
    return result


class PreflightReport(BaseModel):
    """What ``pgautodumper preflight`` found (its ``--json`` shape)."""

    database: str
    server_version: str
    server_version_num: int
    database_size_bytes: int
    is_replica: bool
    pg_dump_major: int
    part_size_bytes: int
    local_pg_dump: str | None
    bucket_checked: str | None
    warnings: list[str]


def check(
    info: ConnectionInfo, *, bucket: str | None, prefix: str | None, name: str
) -> PreflightReport:
    """The CLI's preflight: the same checks, with a probe object instead of the lock."""
    inspection = inspect(info)
    facts, warnings = inspection.facts, inspection.warnings
    major = choose_pg_dump_major(facts.server_version_num, task_pg_dump_majors())
    try:
        tool = pgtools.find_tool("pg_dump", pgtools.server_major(facts.server_version_num))
        local = f"{tool.path} ({tool.version})"
    except PgVersionMismatchError as exc:
        local = None
        warnings.append(f"a local backup would fail: {exc.message}")
    checked = None
    if bucket:
        check_bucket_writable(bucket, prefix, name)
        checked = f"s3://{bucket}/{layout.name_prefix(prefix, name)}"
    return PreflightReport(
        database=info.describe(),
        server_version=facts.server_version,
        server_version_num=facts.server_version_num,
        database_size_bytes=facts.database_size_bytes,
        is_replica=facts.is_replica,
        pg_dump_major=major,
        part_size_bytes=storage.initial_part_size(facts.database_size_bytes),
        local_pg_dump=local,
        bucket_checked=checked,
        warnings=warnings,
    )
