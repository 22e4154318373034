"""Verify: prove a backup restores, before anyone needs it.

Restore into a uniquely named scratch database, compare every table's exact
row count with the manifest (taken in the dump's own snapshot), drop the
scratch database whatever happens, and record the verdict next to the backup.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import UTC, datetime

from psycopg import sql

from pgautodumper import __version__, catalog, layout, storage
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import IntegrityError, VerifyMismatchError
from pgautodumper.manifest import Verdict, VerifiedTable
from pgautodumper.restore import RestoreOptions, restore
from pgautodumper.snapshot import count_rows

log = logging.getLogger(__name__)


def scratch_name(keys: layout.BackupKeys) -> str:
    return f"pgad_verify_{keys.run_id[:24]}_{secrets.token_hex(4)}".lower().replace("-", "_")


def compare(
    expected: dict[str, int], restored: dict[str, int]
) -> tuple[list[VerifiedTable], list[str]]:
    tables = [
        VerifiedTable(table=name, expected_rows=rows, restored_rows=restored.get(name))
        for name, rows in sorted(expected.items())
    ]
    return tables, sorted(set(restored) - set(expected))


def verify(bucket: str, keys: layout.BackupKeys, scratch: ConnectionInfo) -> Verdict:
    """Restore-and-compare; writes ``<backup>.verified.json`` and returns the verdict.

    Raises :class:`VerifyMismatchError` (after recording the failed verdict)
    when counts differ, and integrity errors (checksum) as they are.
    """
    manifest = catalog.read_manifest(bucket, keys)
    database = scratch_name(keys)
    started = time.monotonic()
    with connect(scratch) as admin:
        admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(database))
        )
    log.info("verify %s in scratch database %s", keys.dump, database)
    try:
        restore(bucket, keys, scratch.with_params(dbname=database), RestoreOptions(no_owner=True))
        restore_seconds = round(time.monotonic() - started, 3)
        with connect(scratch.with_params(dbname=database)) as conn:
            restored = {t.qualified: t.rows for t in count_rows(conn)}
    except IntegrityError as exc:
        _record(
            bucket,
            keys,
            Verdict(
                dump_key=keys.dump,
                verdict="failed",
                checked_at=datetime.now(UTC),
                restore_seconds=round(time.monotonic() - started, 3),
                sha256_ok=False,
                tables=[],
                reason=exc.message,
                tool_version=__version__,
            ),
        )
        raise
    finally:
        _drop(scratch, database)
    tables, extra = compare(manifest.row_counts(), restored)
    failed = [t for t in tables if not t.matches]
    verdict = Verdict(
        dump_key=keys.dump,
        verdict="failed" if failed or extra else "passed",
        checked_at=datetime.now(UTC),
        restore_seconds=restore_seconds,
        sha256_ok=True,
        tables=tables,
        extra_tables=extra,
        reason=f"{len(failed)} table(s) differ, {len(extra)} unexpected"
        if failed or extra
        else None,
        tool_version=__version__,
    )
    _record(bucket, keys, verdict)
    if not verdict.passed:
        raise VerifyMismatchError(
            f"verify of {keys.dump} failed: " + "; ".join(diff_lines(verdict)),
            hint="do not rely on this backup; inspect the source and take a new one",
        )
    return verdict


def diff_lines(verdict: Verdict) -> list[str]:
    lines = [
        f"{t.table}: manifest {t.expected_rows} rows, restored "
        f"{'missing' if t.restored_rows is None else t.restored_rows}"
        for t in verdict.mismatches()
    ]
    return lines + [f"{name}: not in the manifest" for name in verdict.extra_tables]


def _record(bucket: str, keys: layout.BackupKeys, verdict: Verdict) -> None:
    storage.put(bucket, keys.verified, verdict.to_json())


def _drop(scratch: ConnectionInfo, database: str) -> None:
    with connect(scratch) as admin:
        admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))
        )
