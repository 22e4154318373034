"""Verify: prove a backup restores, before anyone needs it.

Restore into a uniquely named scratch database, compare every table's exact
row count with the manifest (taken in the dump's own snapshot), record the
verdict next to the backup whatever happened, and drop the scratch database.

Cleanup never masks the verdict: a scratch database that cannot be dropped
(a session the scratch role may not end is still connected) is logged as a
warning, and the next verify drops scratch databases left over for more than
a day. Their names carry their creation time for that reason.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from pgautodumper import __version__, catalog, database_locale, layout, storage
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.contract import scratch_lacks
from pgautodumper.database_locale import DatabaseLocale
from pgautodumper.errors import (
    DatabaseError,
    DatabasePermissionError,
    PgautodumperError,
    VerifyMismatchError,
    redact,
)
from pgautodumper.manifest import Manifest, ManifestV2, Verdict, VerifiedTable
from pgautodumper.parallel_restore import available_collations, available_extensions
from pgautodumper.plan import HASHED_ON_AN_ENUM
from pgautodumper.restore import RestoreOptions, restore
from pgautodumper.snapshot import count_rows

log = logging.getLogger(__name__)

SCRATCH_PREFIX = "pgad_verify_"
# A scratch database older than this is a leftover: no verify runs this long.
LEFTOVER_AGE = timedelta(days=1)
# A plain DROP DATABASE already waits up to 5 s for other sessions to leave (and
# signals autovacuum workers itself); these attempts bound the rest.
DROP_ATTEMPTS = 5
DROP_PAUSE_SECONDS = 1.0

_STAMP = "%Y%m%d%H%M%S"
_STAMPED = re.compile(rf"^{SCRATCH_PREFIX}(\d{{14}})_")

# Other sessions on a database, and whether this role may end each one: the
# rule the server applies to pg_terminate_backend and DROP DATABASE ... FORCE
# (privileges of the session's role, or pg_signal_backend; only a superuser
# may end a superuser's session; background workers such as autovacuum never).
_OTHER_SESSIONS = """
SELECT pg_catalog.count(*),
       pg_catalog.count(*) FILTER (WHERE NOT coalesce(
           a.backend_type = 'client backend'
           AND (pg_catalog.pg_has_role(current_user, a.usesysid, 'USAGE')
                OR pg_catalog.pg_has_role(current_user, 'pg_signal_backend', 'USAGE'))
           AND (NOT r.rolsuper OR me.rolsuper), false))
  FROM pg_catalog.pg_stat_activity a
  LEFT JOIN pg_catalog.pg_roles r ON r.oid = a.usesysid
  CROSS JOIN (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) me
 WHERE a.datname = %s AND a.pid <> pg_catalog.pg_backend_pid()
"""

_SCRATCH_DATABASES = (
    "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE 'pgad\\_verify\\_%' ORDER BY 1"
)
# For names without a time in them (older releases): needs superuser or
# pg_read_server_files, and fails for a database outside the default tablespace.
_CREATED_FROM_FILES = (
    "SELECT (pg_catalog.pg_stat_file('base/' || d.oid || '/PG_VERSION')).modification"
    " FROM pg_catalog.pg_database d WHERE d.datname = %s"
)


def scratch_name(keys: layout.BackupKeys, *, now: datetime | None = None) -> str:
    """``pgad_verify_<UTC creation time>_<run id>_<random>``, at most 60 characters."""
    stamp = (now or datetime.now(UTC)).strftime(_STAMP)
    return f"{SCRATCH_PREFIX}{stamp}_{scratch_run(keys.run_id)}_{secrets.token_hex(4)}"


def scratch_run(run_id: str) -> str:
    """The part of a scratch database's name that names the backup's run."""
    return re.sub(r"[^a-z0-9_]", "_", run_id.lower())[:24]


def created_at(name: str) -> datetime | None:
    """The creation time a scratch database's name carries, if it carries one."""
    match = _STAMPED.match(name)
    if not match:
        return None
    try:
        return datetime.strptime(match[1], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def compare(
    expected: dict[str, int], restored: dict[str, int]
) -> tuple[list[VerifiedTable], list[str]]:
    tables = [
        VerifiedTable(table=name, expected_rows=rows, restored_rows=restored.get(name))
        for name, rows in sorted(expected.items())
    ]
    return tables, sorted(set(restored) - set(expected))


def verify(
    bucket: str, keys: layout.BackupKeys, scratch: ConnectionInfo, *, database: str | None = None
) -> Verdict:
    """Restore-and-compare; writes ``<backup>.verified.json`` and returns the verdict.

    Either format: the restore is the one ``pgautodumper restore`` runs (for
    format 2 in parallel, as many loaders as CPUs), and the restored row counts
    are compared with the manifest's ``tables``.

    Every outcome is recorded: a failure (a checksum mismatch, pg_restore
    failing, the scratch server refusing) is stored as a "failed" verdict with
    its reason, then raised as the named error it was. Differing counts raise
    :class:`VerifyMismatchError` after the verdict is stored.
    """
    manifest = catalog.read_manifest(bucket, keys)
    dump_key = manifest.dump_key
    database = database or scratch_name(keys)
    started = time.monotonic()
    restored_ok = False
    created: list[str] = []
    try:
        _create(scratch, database, manifest.database_locale)
        try:
            # After the create: a scratch server that refuses us is reported once, by it.
            drop_leftovers(scratch)
            # The collations a server has depend on the database's encoding: asked of the
            # scratch database, which has the source's.
            options = scratch_options(scratch.with_params(dbname=database), manifest)
            log.info("verify %s in scratch database %s", dump_key, database)
            result = restore(bucket, keys, scratch.with_params(dbname=database), options)
            created = result.roles.created if result.roles else []
            restored_ok = True
            restore_seconds = round(time.monotonic() - started, 3)
            restored, via_root = _counts(scratch.with_params(dbname=database))
        finally:
            drop_scratch(scratch, database)
            drop_roles(scratch, created)
    except PgautodumperError as exc:
        _record_failure(bucket, keys, dump_key, exc, started=started, sha256_ok=restored_ok)
        raise
    expected = by_root(manifest.row_counts(), via_root)
    tables, extra = compare(expected, by_root(restored, via_root))
    lacks = scratch_lacks(options.missing_extensions, options.missing_collations)
    # Without an extension or a collation some tables cannot exist: not checked, not lost.
    unchecked = sorted(set(expected) - set(restored)) if lacks else []
    failed = [t for t in tables if not t.matches and t.table not in unchecked]
    verdict = Verdict(
        dump_key=dump_key,
        verdict="failed" if failed or extra else "warn" if lacks else "passed",
        checked_at=datetime.now(UTC),
        restore_seconds=restore_seconds,
        sha256_ok=True,
        tables=tables,
        extra_tables=extra,
        missing_extensions=options.missing_extensions,
        missing_collations=options.missing_collations,
        unchecked_tables=unchecked,
        reason=_reason(failed, extra, lacks, unchecked),
        tool_version=__version__,
    )
    _record(bucket, keys, verdict)
    if not verdict.passed:
        raise VerifyMismatchError(
            f"verify of {dump_key} failed: " + "; ".join(diff_lines(verdict)),
            hint="do not rely on this backup; inspect the source and take a new one",
        )
    return verdict


def _reason(
    failed: list[VerifiedTable], extra: list[str], lacks: str, unchecked: list[str]
) -> str | None:
    if failed or extra:
        return f"{len(failed)} table(s) differ, {len(extra)} unexpected"
    if lacks:
        return (
            f"the scratch server lacks {lacks}: {len(unchecked)} table(s) not checked "
            f"({', '.join(unchecked) or 'none'})"
        )
    return None


def scratch_options(scratch: ConnectionInfo, manifest: Manifest | ManifestV2) -> RestoreOptions:
    """How to restore into the scratch server: with the backup's roles where it may create
    them (so owners and grants are restored, hence verified, too), past the errors of
    extensions it cannot load and collations it lacks (a WARN verdict names them, and
    the tables it could not check), and without tablespaces,
    which a scratch server does not have (where a table is stored is not its data)."""
    with connect(scratch) as admin:
        (may_create_roles,) = admin.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user"
        ).fetchone()
        available = available_extensions(admin)
        collations = available_collations(admin)
    if not isinstance(manifest, ManifestV2):
        # Format 1 stores no roles, nor the database's properties.
        return RestoreOptions(no_owner=True, no_tablespaces=True)
    with_roles = manifest.roles is not None and may_create_roles
    missing = sorted(set(manifest.extensions) - available)
    lacking = sorted(set(manifest.collations) - collations)
    if missing or lacking:
        log.warning("the scratch server lacks %s", scratch_lacks(missing, lacking))
    return RestoreOptions(
        no_owner=not with_roles, with_roles=with_roles, owners_if_possible=True,
        missing_extensions=missing, missing_collations=lacking, database_properties=False,
        no_tablespaces=True,
    )  # fmt: skip


def drop_roles(scratch: ConnectionInfo, created: list[str]) -> None:
    """The roles this verify created on a shared scratch server (its database is gone)."""
    for name in created:
        try:
            with connect(scratch, writable=True) as admin:
                admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))
        except (PgautodumperError, psycopg.Error) as exc:
            log.warning("could not drop role %s created for the verify: %s", name, exc)


def diff_lines(verdict: Verdict) -> list[str]:
    lines = [
        f"{t.table}: manifest {t.expected_rows} rows, restored "
        f"{'missing' if t.restored_rows is None else t.restored_rows}"
        for t in verdict.mismatches()
    ]
    return lines + [f"{name}: not in the manifest" for name in verdict.extra_tables]


def _record(bucket: str, keys: layout.BackupKeys, verdict: Verdict) -> None:
    storage.put(bucket, keys.verified, verdict.to_json())


def _record_failure(
    bucket: str,
    keys: layout.BackupKeys,
    dump_key: str,
    exc: PgautodumperError,
    *,
    started: float,
    sha256_ok: bool,
) -> None:
    """Store a "failed" verdict for ``exc``; never replaces ``exc`` with its own error."""
    verdict = Verdict(
        dump_key=dump_key,
        verdict="failed",
        checked_at=datetime.now(UTC),
        restore_seconds=round(time.monotonic() - started, 3),
        sha256_ok=sha256_ok or exc.on_intact_bytes,
        tables=[],
        reason=f"{type(exc).__name__}: {exc.message}",
        tool_version=__version__,
    )
    try:
        _record(bucket, keys, verdict)
    except PgautodumperError as record_error:
        log.warning("could not record the failed verdict of %s: %s", dump_key, record_error)


def _create(scratch: ConnectionInfo, database: str, locale: DatabaseLocale | None) -> None:
    """The scratch database, with the source's encoding and locale: with the scratch
    server's own (UTF8, C), a valid backup could fail to load (under C, 'é' fails a
    [[:alpha:]] check)."""
    with connect(scratch, writable=True) as admin:
        try:
            database_locale.create_database(admin, database, locale)
        except psycopg.Error as exc:
            refused = isinstance(exc, psycopg.errors.InsufficientPrivilege)
            raise (DatabasePermissionError if refused else DatabaseError)(
                f"cannot create scratch database {database} on {scratch.describe()}: "
                f"{_first_line(exc, scratch)}",
                hint="the scratch role needs CREATEDB (or ownership of a server of its own)",
            ) from None


def by_root(counts: dict[str, int], via_root: dict[str, str]) -> dict[str, int]:
    """Counts with the partitions loaded via their root summed up under the root.

    Hash partitioning on an enum column: the hash codes depend on the enum's
    OIDs, which a restore does not keep, so pg_dump loads those partitions
    through their root and rows may land in another partition than in the
    source. Only their total is the backup's to keep.
    """
    totals: dict[str, int] = {}
    for table, rows in counts.items():
        name = via_root.get(table, table)
        totals[name] = totals.get(name, 0) + rows
    return totals


# Leaf partitions under a root hash-partitioned with the enum hash opclass, and their
# root (pg_dump's getPartitioningInfo() makes the same test, as plan.py does).
_LOADED_VIA_ROOT = f"""
SELECT ln.nspname, l.relname, rn.nspname, r.relname
  FROM pg_catalog.pg_partitioned_table pt
  CROSS JOIN LATERAL pg_catalog.pg_partition_tree(pt.partrelid) p
  JOIN pg_catalog.pg_class l ON l.oid = p.relid
  JOIN pg_catalog.pg_namespace ln ON ln.oid = l.relnamespace
  JOIN pg_catalog.pg_class r ON r.oid = pg_catalog.pg_partition_root(p.relid)
  JOIN pg_catalog.pg_namespace rn ON rn.oid = r.relnamespace
 WHERE p.isleaf AND {HASHED_ON_AN_ENUM}
"""


def _counts(target: ConnectionInfo) -> tuple[dict[str, int], dict[str, str]]:
    """Restored row counts, and the partitions loaded via their root (leaf -> root)."""
    with connect(target) as conn:
        try:
            counts = {t.qualified: t.rows for t in count_rows(conn)}
            via_root = {
                f"{leaf_schema}.{leaf}": f"{root_schema}.{root}"
                for leaf_schema, leaf, root_schema, root in conn.execute(_LOADED_VIA_ROOT)
            }
            return counts, via_root
        except psycopg.Error as exc:
            raise DatabaseError(
                f"counting the restored rows in {target.describe()} failed: "
                f"{_first_line(exc, target)}",
                hint="check the scratch server's log and run the verify again",
            ) from None


def _first_line(exc: BaseException, info: ConnectionInfo) -> str:
    lines = redact(str(exc), info.secret_values()).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def drop_scratch(
    scratch: ConnectionInfo,
    database: str,
    *,
    attempts: int | None = None,
    pause_seconds: float | None = None,
) -> bool:
    """Drop a scratch database, robustly; True when it is gone. Never raises.

    A plain DROP DATABASE, retried a bounded number of times: PostgreSQL makes
    autovacuum workers leave by itself. FORCE (which terminates the other
    sessions) only when this role may end every one of them: otherwise it fails
    with InsufficientPrivilege instead of waiting ("must be a member of the
    role whose process is being terminated").
    """
    attempts = attempts or DROP_ATTEMPTS
    pause_seconds = DROP_PAUSE_SECONDS if pause_seconds is None else pause_seconds
    last: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            with connect(scratch, writable=True) as admin:
                sessions, unendable = admin.execute(_OTHER_SESSIONS, (database,)).fetchone() or (
                    0,
                    0,
                )
                force = sql.SQL(" WITH (FORCE)") if sessions and not unendable else sql.SQL("")
                admin.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(database), force)
                )
            return True
        except (psycopg.Error, PgautodumperError) as exc:
            last = exc
        if attempt < attempts:
            time.sleep(pause_seconds)
    log.warning(
        "could not drop scratch database %s on %s after %d attempts (%s); "
        "the next verify drops it once it is a day old",
        database,
        scratch.describe(),
        attempts,
        _first_line(last, scratch) if last else "unknown error",
    )
    return False


def drop_leftovers(scratch: ConnectionInfo, *, now: datetime | None = None) -> list[str]:
    """Drop scratch databases older than :data:`LEFTOVER_AGE`; their names. Never raises."""
    now = now or datetime.now(UTC)
    dropped = []
    try:
        with connect(scratch) as admin:
            names = [row[0] for row in admin.execute(_SCRATCH_DATABASES)]
            ages = {name: created_at(name) or _created_from_files(admin, name) for name in names}
    except (psycopg.Error, PgautodumperError) as exc:
        log.warning("could not look for leftover scratch databases: %s", exc)
        return dropped
    for name, created in ages.items():
        if created is None or now - created < LEFTOVER_AGE:
            continue
        log.info("dropping leftover scratch database %s (created %s)", name, created.isoformat())
        if drop_scratch(scratch, name, attempts=1):
            dropped.append(name)
    return dropped


def _created_from_files(admin: psycopg.Connection, name: str) -> datetime | None:
    try:
        row = admin.execute(_CREATED_FROM_FILES, (name,)).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row and row[0] else None
