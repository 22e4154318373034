"""The backup pipeline: pg_dump ─▶ zstd ─▶ sha256 ─▶ S3 multipart, manifest last.

No temporary files and bounded memory: pg_dump writes its custom format with
its own (single-threaded) compression off, zstd compresses in worker threads,
the hash covers the stored bytes, and the sink keeps at most a few parts in
memory. The dump object becomes visible only after pg_dump exited 0 and every
byte was uploaded; the manifest, written after it, is the commit marker.

Before pg_dump starts, the snapshot's connection takes ACCESS SHARE on every
table within ``lock_wait_timeout_seconds`` (see blockers.py), so a migration's
lock fails the run promptly and by name. Before the object is completed, that
connection must still be alive: if it died, the row counts and the snapshot
cannot be vouched for, and nothing is stored.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from pydantic import BaseModel

from pgautodumper import __version__, blockers, layout, storage, streams
from pgautodumper.child import ToolProcess
from pgautodumper.connection import ConnectionInfo
from pgautodumper.contract import DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS
from pgautodumper.errors import (
    DumpFailedError,
    PgautodumperError,
    read_denied,
    row_security_refusal,
)
from pgautodumper.manifest import Compression, Manifest, TableRows
from pgautodumper.pgtools import PgTool, find_tool, server_major
from pgautodumper.plan import DEFAULT_STREAM_THRESHOLD
from pgautodumper.snapshot import (
    ServerInfo,
    count_rows,
    ensure_alive,
    ensure_not_rewritten,
    held_snapshot,
    recovery_conflicts,
    replica_conflict,
    snapshot_lost,
    went_away,
)

log = logging.getLogger(__name__)

# zstd level 1 was both faster and smaller than level 3 on the benchmark data.
DEFAULT_LEVEL = 1
DEFAULT_THREADS = 2


class BackupOptions(BaseModel):
    bucket: str
    prefix: str = ""
    name: str | None = None
    run_id: str | None = None
    started_at: datetime | None = None
    level: int = DEFAULT_LEVEL
    threads: int = DEFAULT_THREADS
    pg_dump_major: int | None = None
    part_size: int | None = None
    lock_wait_timeout_seconds: int = DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS
    jobs: int = 1
    stream_threshold_bytes: int = DEFAULT_STREAM_THRESHOLD


SinkFactory = Callable[[str, int], storage.Sink]


def s3_sink(bucket: str) -> SinkFactory:
    return lambda key, part_size: storage.S3MultipartSink(bucket, key, base_part_size=part_size)


class RowCounter(threading.Thread):
    """Counts rows in the held snapshot while the dump streams (``skip``: counted otherwise)."""

    def __init__(
        self,
        conn: psycopg.Connection,
        info: ConnectionInfo,
        skip: set[tuple[str, str]] | None = None,
    ) -> None:
        super().__init__(name="row-counts", daemon=True)
        self._conn = conn
        self._info = info
        self._skip = skip or set()
        self.result: list[TableRows] = []
        self.error: PgautodumperError | None = None
        self._stopping = False

    def run(self) -> None:
        try:
            self.result = count_rows(self._conn, skip=self._skip)
        except PgautodumperError as exc:
            self.error = exc
        except psycopg.Error as exc:
            self.error = snapshot_lost(self._info, exc, while_="counting rows")

    def rows(self) -> list[TableRows]:
        self.join()
        if self.error:
            raise self.error
        return self.result

    def failure(self) -> PgautodumperError | None:
        """Its error, if it has failed already (not one caused by :meth:`stop`)."""
        return None if self.is_alive() or self._stopping else self.error

    def stop(self) -> None:
        """Cancel a count still running (the run failed), so the rollback need not wait."""
        if self.ident is None:
            return  # never started
        if self.is_alive():
            self._stopping = True
            with contextlib.suppress(psycopg.Error):
                self._conn.cancel_safe(timeout=10)
        self.join(timeout=30)


def pg_dump_argv(
    tool: PgTool, snapshot_id: str, *, lock_wait_timeout_seconds: int, encoding: str
) -> list[str]:
    """No connection string: host, user and password travel in the environment.

    ``--lock-wait-timeout`` (milliseconds) bounds pg_dump's own LOCK TABLE waits:
    they can queue behind an ACCESS EXCLUSIVE request that arrived after ours.
    ``--encoding`` is the database's: without it pg_dump dumps in whatever client
    encoding the session gets (PGCLIENTENCODING, or a client_encoding set on the
    role or the database), and a LATIN1 one fails on the first character LATIN1
    lacks; format 2's COPY streams are in the same encoding.
    """
    return [
        str(tool.path),
        "--format=custom",
        "--compress=0",
        f"--snapshot={snapshot_id}",
        f"--lock-wait-timeout={lock_wait_timeout_seconds * 1000}",
        f"--encoding={encoding}",
        "-w",
    ]


def run_backup(
    info: ConnectionInfo, options: BackupOptions, sink_factory: SinkFactory | None = None
) -> Manifest:
    """Dump one database to the store; returns the manifest that was written."""
    started = time.monotonic()
    started_at = datetime.now(UTC)
    with held_snapshot(info) as (snapshot, conn):
        server = snapshot.server
        tool = find_tool(
            "pg_dump", server_major(server.server_version_num), pinned=options.pg_dump_major
        )
        name = options.name or server.database
        keys = layout.backup_keys(
            options.prefix, name, options.started_at or started_at, options.run_id
        )
        part_size = options.part_size or storage.initial_part_size(server.database_size_bytes)
        log.info("backup %s: %s %s -> %s", name, tool.name, tool.version, keys.dump)
        # Before anything is uploaded: a locked table fails the run here, by name.
        locked = blockers.lock_for_dump(
            conn, info, wait_seconds=options.lock_wait_timeout_seconds, database=server.database
        )
        ensure_not_rewritten(conn, info, locked)
        conflicts_before = recovery_conflicts(conn) if server.is_replica else None
        sink = (sink_factory or s3_sink(options.bucket))(keys.dump, part_size)
        counter = RowCounter(conn, info)
        try:
            counter.start()
            dump = ToolProcess(
                pg_dump_argv(
                    tool,
                    snapshot.snapshot_id,
                    lock_wait_timeout_seconds=options.lock_wait_timeout_seconds,
                    encoding=server.encoding,
                ),
                info.libpq_env(),
                stdout=subprocess.PIPE,
                secrets=info.secret_values(),
            )
            try:
                raw_bytes, stored_bytes, sha256 = _stream_dump(
                    dump, sink, options, database=server.database
                )
            except DumpFailedError as failure:
                raise _root_cause(
                    failure, dump, counter, conn, info, server, locked, options, conflicts_before
                ) from None
            tables = counter.rows()
            # The snapshot was held for the whole dump only if its connection is alive now.
            ensure_alive(conn, info)
            parts = sink.complete()
        except BaseException:
            counter.stop()
            sink.abort()
            raise
    finished_at = datetime.now(UTC)
    manifest = Manifest(
        name=name,
        database=server.database,
        run_id=keys.run_id,
        dump_key=keys.dump,
        manifest_key=keys.manifest,
        stored_bytes=stored_bytes,
        raw_bytes=raw_bytes,
        parts=parts,
        part_size_bytes=part_size,
        sha256=sha256,
        compression=Compression(level=options.level, threads=options.threads),
        pg_dump_version=tool.version,
        server_version=server.server_version,
        server_version_num=server.server_version_num,
        snapshot=snapshot.snapshot_id,
        started_at=started_at,
        finished_at=finished_at,
        duration_seconds=round(time.monotonic() - started, 3),
        tool_version=__version__,
        database_locale=server.database_locale,
        tables=tables,
    )
    with storage.withdrawn_on_failure(options.bucket, [keys.dump]):
        sink.write_manifest(keys.manifest, manifest.to_json())
    return manifest


def _root_cause(
    failure: DumpFailedError,
    dump: ToolProcess,
    counter: RowCounter,
    conn: psycopg.Connection,
    info: ConnectionInfo,
    server: ServerInfo,
    locked: list[blockers.Table],
    options: BackupOptions,
    conflicts_before: int | None,
) -> PgautodumperError:
    """What made pg_dump fail, when we know better than its last words.

    A server that restarted or went away ended every session (retryable); a
    snapshot connection that failed first explains a pg_dump that "could not
    import the requested snapshot"; a LOCK TABLE that timed out is a lock held
    by someone else, named by a diagnosis; a replica that cancelled or ended a
    session to replay the primary says so in its count (``conflicts_before``).
    """
    if dump.process.returncode in (None, 0):
        return failure  # compression failed, pg_dump did not
    if (gone := went_away(info, server, [failure])) is not None:
        return gone
    # A count on a connection that just died fails at once; give it a moment to say so.
    counter.join(timeout=1)
    if (error := counter.failure()) is not None:
        return error
    stderr = dump.stderr_tail()
    if blockers.pg_dump_lock_timeout(stderr):
        return blockers.diagnose(
            info,
            locked,
            waited_seconds=options.lock_wait_timeout_seconds,
            database=conn.info.dbname,
        )
    if refusal := row_security_refusal(stderr):
        return read_denied(refusal, what=conn.info.dbname, role=conn.info.user)
    conflict = replica_conflict(failure, info, conflicts_before, conn.info.dbname)
    if conflict is not None:
        return conflict
    if "snapshot" in stderr.lower() and not counter.is_alive():
        # pg_dump could not import the snapshot: was its transaction gone already?
        try:
            ensure_alive(conn, info)
        except DumpFailedError as lost:
            return lost
    return failure


def _stream_dump(
    dump: ToolProcess, sink: storage.Sink, options: BackupOptions, *, database: str
) -> tuple[int, int, str]:
    """Pump pg_dump's output through zstd into the sink; (raw, stored, sha256)."""
    try:
        result = streams.compress(
            dump.stdout, sink, level=options.level, threads=options.threads,
            what=f"the dump of {database}",
        )  # fmt: skip
    except BaseException:
        dump.kill()
        raise
    if dump.wait() != 0:
        raise DumpFailedError(
            f"dump of {database} failed: {dump.failure()}",
            hint="nothing was stored; fix the cause above and run the backup again",
        )
    return result.raw_bytes, result.stored_bytes, result.sha256
