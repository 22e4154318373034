"""Format 2: one snapshot, many streams, each into its own object; the manifest last.

    leader    REPEATABLE READ, READ ONLY, our session settings; pg_export_snapshot();
              ACCESS SHARE on every table, bounded by the lock wait (blockers.py);
              no table rewritten since the snapshot; the plan (plan.py, under those
              locks: measuring a table locks it); row counts of the tables pg_dump
              keeps (and of inheritance parents, whose count includes children)
    pg_dump   --section=pre-data --section=post-data      → <stem>.schema.dump.zst
    pg_dump   --section=data --exclude-table-data=<each streamed table, quoted exactly>
                                                           → <stem>.data.dump.zst
    jobs x psql  BEGIN REPEATABLE READ READ ONLY; SET TRANSACTION SNAPSHOT;
              LOCK TABLE ONLY t IN ACCESS SHARE MODE NOWAIT (as pg_dump's workers do,
              so a queued ACCESS EXCLUSIVE cannot deadlock us unseen);
              COPY (SELECT <columns> FROM ONLY t [WHERE range]) TO STDOUT, in the
              database's encoding (as pg_dump writes)      → <stem>.part-NNNNN.copy.zst

Every stream goes through zstd and sha256 into its own multipart upload; rows
come from COPY's command tag (psql's ROW_COUNT), checked against the lines
streamed. Nothing is completed until every stream succeeded and the leader's
snapshot is still held; any failure kills every child and aborts every upload,
and a child that dies by a signal we did not send (the OOM killer, an operator)
is a failure like any other.

Peak memory: the interpreter with its libraries and one S3 client (about 80
MiB) plus, per *running* stream (``jobs`` parts and the two archives),
``(PART_IN_FLIGHT + 1)`` S3 part buffers of the object's part size (5 MiB for
objects up to 2.4 TiB: first_part_size) and about 3 MiB of zstd and read
buffers. A stream that ended has uploaded its last part and holds no buffer
while its upload waits to be completed (the sink's ``finish()``). At
``--jobs 2``: about 80 + 4 x (2 x 5 + 3) = 132 MiB, whatever the database size
and however many parts it has (measured 105-115 MiB:
tests/integration/test_format2_backup_memory.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import zstandard

from pgautodumper import (
    __version__,
    aws,
    blockers,
    connection_budget,
    layout,
    roles,
    storage,
    streams,
)
from pgautodumper.backup import BackupOptions, RowCounter, pg_dump_argv
from pgautodumper.child import ToolProcess
from pgautodumper.connection import ConnectionInfo, refused_for_lack_of_slots, session_settings
from pgautodumper.errors import (
    ConnectionLimitError,
    DumpFailedError,
    read_denied,
    row_security_refusal,
)
from pgautodumper.manifest import (
    Compression,
    ManifestV2,
    StoredObject,
    TablePart,
    TableRows,
)
from pgautodumper.pgtools import find_tool, server_major
from pgautodumper.plan import Plan, PlannedPart, make_plan
from pgautodumper.snapshot import (
    ServerInfo,
    ensure_alive,
    ensure_not_rewritten,
    held_snapshot,
    recovery_conflicts,
    replica_conflict,
    snapshot_lost,
    went_away,
)
from pgautodumper.toc import quote_ident

log = logging.getLogger(__name__)

PART_IN_FLIGHT = 1  # parallel streams upload in parallel already
PSQL_WARN_SINCE = 13  # \warn, which carries COPY's row count to stderr
_ROWS = re.compile(r"^PGAUTODUMPER_ROWS (\d+)$")

# What a restore target's server must offer, checked before a restore changes anything.
_EXTENSIONS = "SELECT extname FROM pg_catalog.pg_extension WHERE extname <> 'plpgsql' ORDER BY 1"
# The tablespaces pg_dump names (SET default_tablespace) for tables, matviews and indexes;
# pg_default and pg_global exist on every server.
_TABLESPACES = """
SELECT DISTINCT t.spcname
  FROM pg_catalog.pg_class c
  JOIN pg_catalog.pg_tablespace t ON t.oid = c.reltablespace
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p', 'm', 'i', 'I')
   AND t.spcname NOT IN ('pg_default', 'pg_global')
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp_)'
 ORDER BY 1
"""
# The collations of pg_catalog that objects use: initdb imports them from the operating
# system's locales, so a server built elsewhere may lack some ("en_US" on RDS, not on a
# Debian server without the locales package). Bootstrap ones (C, POSIX) are pinned and
# have no pg_depend rows.
_COLLATIONS = """
SELECT DISTINCT c.collname
  FROM pg_catalog.pg_depend d
  JOIN pg_catalog.pg_collation c ON c.oid = d.refobjid
 WHERE d.refclassid = 'pg_catalog.pg_collation'::pg_catalog.regclass
   AND c.collnamespace = 'pg_catalog'::pg_catalog.regnamespace
   AND d.deptype = 'n'
 ORDER BY 1
"""

SinkFactory = Callable[[str, int], storage.Sink]


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def copy_query(part: PlannedPart | TablePart) -> str:
    """``COPY (SELECT <columns> FROM ONLY t [WHERE range]) TO STDOUT``."""
    columns = ", ".join(map(quote_ident, part.columns))
    where = f" WHERE {part.predicate}" if part.predicate else ""
    table = qualified(part.schema_name, part.table)
    return f"COPY (SELECT {columns} FROM ONLY {table}{where}) TO STDOUT"


def psql_argv(psql: str) -> list[str]:
    return [psql, "-X", "-q", "-w", "-v", "ON_ERROR_STOP=1", "-f", "-"]


def copy_out_script(snapshot_id: str, part: PlannedPart) -> str:
    """One psql session that reads one part in the snapshot.

    ``\\g /dev/stdout`` sends COPY's data to stdout and makes psql keep COPY's
    command tag in ``ROW_COUNT``, which ``\\warn`` writes to stderr.
    """
    table = qualified(part.schema_name, part.table)
    return "\n".join(
        [
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;",
            f"SET TRANSACTION SNAPSHOT '{snapshot_id}';",
            f"LOCK TABLE ONLY {table} IN ACCESS SHARE MODE NOWAIT;",
            f"{copy_query(part)} \\g /dev/stdout",
            "\\warn PGAUTODUMPER_ROWS :ROW_COUNT",
            "COMMIT;",
            "",
        ]
    )


def exclusions(plan: Plan) -> list[str]:
    """pg_dump's --exclude-table-data for the streamed tables: exact, quoted names.

    A pattern could also match a sequence's data (SEQUENCE SET); a quoted name
    matches only the relation so named, and a table and a sequence cannot
    share a name in one schema.
    """
    return [f"--exclude-table-data={qualified(s, t)}" for s, t in plan.streamed_tables()]


def rows_from(stderr: str) -> int | None:
    for line in reversed(stderr.split(" | ")):
        if match := _ROWS.match(line.strip()):
            return int(match[1])
    return None


@dataclass
class _Stream:
    """One child process writing one object."""

    key: str
    what: str
    process: ToolProcess | None = None
    sink: storage.Sink | None = None
    result: streams.Compressed | None = None
    killed: bool = False  # by us, because another stream failed


class _Streams:
    """Every stream of one backup: started, stopped and completed together."""

    def __init__(self, sink_factory: SinkFactory, *, level: int) -> None:
        self._sink_factory = sink_factory
        self._level = level
        self._lock = threading.Lock()
        self._all: list[_Stream] = []
        self.failed = threading.Event()

    def run(
        self, stream: _Stream, argv: list[str], env: dict[str, str], part_size: int,
        secrets: list[str], script: str | None = None,
    ) -> _Stream:  # fmt: skip
        with self._lock:
            if self.failed.is_set():
                raise _Cancelled()
            self._all.append(stream)  # from now on abort() aborts its upload
        # S3 round trips, outside the lock: fail() never waits for them.
        stream.sink = self._sink_factory(stream.key, part_size)
        with self._lock:
            if self.failed.is_set():
                raise _Cancelled()
            stream.process = ToolProcess(
                argv, env, stdin=subprocess.PIPE if script else None, stdout=subprocess.PIPE,
                secrets=secrets,
            )  # fmt: skip
        try:
            if script:
                _send(stream.process, script)
            stream.result = streams.compress(
                stream.process.stdout, stream.sink, level=self._level, threads=0,
                what=stream.what,
            )  # fmt: skip
        except BaseException:
            self.fail()
            raise
        if stream.process.wait() != 0:
            if stream.killed:
                raise _Cancelled()
            self.fail()
            raise DumpFailedError(
                f"{stream.what} failed: {stream.process.failure()}",
                hint="nothing was stored; fix the cause above and run the backup again",
            )
        try:
            stream.sink.finish()  # its last part; no buffer kept until completion
        except BaseException:
            self.fail()
            raise
        return stream

    def fail(self) -> None:
        """Stop every child: the backup has failed."""
        self.failed.set()
        with self._lock:
            for stream in self._all:
                if stream.process is not None and stream.process.process.poll() is None:
                    stream.killed = True
                    stream.process.kill_now()

    def abort(self) -> None:
        self.fail()
        for stream in self._all:
            if stream.process is not None:
                stream.process.wait()
            if stream.sink is not None:
                stream.sink.abort()

    def keys(self) -> list[str]:
        return [stream.key for stream in self._all]

    def complete(self, bucket: str) -> None:
        """Make every object visible, or none: a failed completion deletes the rest."""
        done: list[str] = []
        try:
            for stream in self._all:
                assert stream.sink is not None
                stream.sink.complete()
                done.append(stream.key)
        except BaseException:
            self.abort()
            storage.delete_quietly(bucket, done)
            raise


class _Cancelled(Exception):
    """A stream stopped because another one failed first."""


def _send(process: ToolProcess, script: str) -> None:
    """Write psql's script; a psql that exited already (it could not connect) says why."""
    with contextlib.suppress(BrokenPipeError):
        try:
            process.stdin.write(script.encode())
        finally:
            process.stdin.close()


def _object(stream: _Stream) -> StoredObject:
    assert stream.result is not None
    r = stream.result
    return StoredObject(
        key=stream.key, sha256=r.sha256, stored_bytes=r.stored_bytes, raw_bytes=r.raw_bytes
    )


def capacity(first_part_size: int) -> int:
    """How much one object holds in S3's 10,000 parts, its parts growing (storage.part_size)."""
    return sum(
        storage.PARTS_PER_STEP * storage.part_size(number, first_part_size)
        for number in range(1, storage.MAX_PARTS + 1, storage.PARTS_PER_STEP)
    )


def first_part_size(estimated_bytes: int) -> int:
    """A stream's first part size: 5 MiB while the growing parts hold twice the estimate
    (objects up to about 2.4 TiB), doubled until they do. Memory is per running stream,
    so it must not follow the size of the database (nor of the table) as a whole."""
    size = storage.MIN_PART_SIZE
    while capacity(size) < 2 * estimated_bytes and size < storage.MAX_PART_SIZE:
        size *= 2
    return size


def run_parallel_backup(
    info: ConnectionInfo, options: BackupOptions, sink_factory: SinkFactory | None = None
) -> ManifestV2:
    """Dump one database as format 2; returns the manifest that was written."""
    # One S3 client, made here: streams starting together in their threads would each
    # make one otherwise (the cache is filled after the first is made), 10 MiB apiece,
    # and botocore's session is not safe to create clients from in parallel.
    aws.client("s3")
    started = time.monotonic()
    started_at = datetime.now(UTC)
    factory = sink_factory or (
        lambda key, size: storage.S3MultipartSink(
            options.bucket, key, base_part_size=size, in_flight=PART_IN_FLIGHT
        )
    )
    with held_snapshot(info) as (snapshot, conn):
        server = snapshot.server
        major = server_major(server.server_version_num)
        pg_dump = find_tool("pg_dump", major, pinned=options.pg_dump_major)
        psql = find_tool("psql", max(major, PSQL_WARN_SINCE))
        name = options.name or server.database
        keys = layout.backup_keys(
            options.prefix, name, options.started_at or started_at, options.run_id
        )
        # Locks first: measuring a table for the plan locks it, and that wait is bounded
        # only here. Once locked, no table can change until the backup ends.
        locked = blockers.lock_for_dump(
            conn, info, wait_seconds=options.lock_wait_timeout_seconds, database=server.database
        )
        ensure_not_rewritten(conn, info, locked)
        try:
            # Beside the leader: the two pg_dumps, then one session per COPY stream.
            jobs = connection_budget.fit_jobs(
                connection_budget.measure(conn), options.jobs, besides=2,
                what=f"the backup of {server.database}",
            )  # fmt: skip
            plan = make_plan(
                conn,
                threshold_bytes=options.stream_threshold_bytes,
                jobs=jobs,
                server_version_num=server.server_version_num,
                locked=[t.oid for t in locked],
            )
            needed_roles = roles.collect(conn)
            extensions = [row[0] for row in conn.execute(_EXTENSIONS)]
            tablespaces = [row[0] for row in conn.execute(_TABLESPACES)]
            collations = [row[0] for row in conn.execute(_COLLATIONS)]
            conflicts_before = recovery_conflicts(conn) if server.is_replica else None
        except psycopg.Error as exc:
            raise snapshot_lost(info, exc, while_="planning the backup") from None
        log.info(
            "backup %s (format 2, %d jobs): %d part(s) of %d table(s) by COPY, the rest by %s %s",
            name, jobs, len(plan.parts), len(plan.streamed_tables()), pg_dump.name,
            pg_dump.version,
        )  # fmt: skip
        counter = RowCounter(conn, info, skip=set(plan.counted_by_copy()))
        # What the remaining-data archive holds at most: all but the streamed tables.
        remaining = server.database_size_bytes - sum(p.estimated_bytes for p in plan.parts)
        work = _Streams(factory, level=options.level)
        secrets = info.secret_values()
        dump_env = info.libpq_env()
        copy_env = info.libpq_env(settings=session_settings(server.server_version_num))
        # COPY writes the client encoding: the database's own, whatever the environment,
        # the role or the database say (pg_dump gets --encoding for the same reason).
        copy_env["PGCLIENTENCODING"] = server.encoding
        base = pg_dump_argv(
            pg_dump,
            snapshot.snapshot_id,
            lock_wait_timeout_seconds=options.lock_wait_timeout_seconds,
            encoding=server.encoding,
        )
        schema = _Stream(keys.schema_archive, f"the schema archive of {server.database}")
        data = _Stream(keys.data_archive, f"the remaining-data archive of {server.database}")
        parts = [
            _Stream(keys.part(number), f"the COPY of {part.qualified} (part {number})")
            for number, part in enumerate(plan.parts, 1)
        ]
        try:
            counter.start()
            archives = ThreadPoolExecutor(2, thread_name_prefix="pg_dump")
            copies = ThreadPoolExecutor(jobs, thread_name_prefix="copy")
            with archives, copies, _stopping_on_error(work):
                futures = [
                    archives.submit(
                        work.run, schema, [*base, "--section=pre-data", "--section=post-data"],
                        dump_env, storage.MIN_PART_SIZE, secrets,
                    ),
                    archives.submit(
                        work.run, data, [*base, "--section=data", *exclusions(plan)], dump_env,
                        first_part_size(remaining), secrets,
                    ),
                ] + [
                    copies.submit(
                        work.run, stream, psql_argv(str(psql.path)), copy_env,
                        first_part_size(part.estimated_bytes), secrets,
                        copy_out_script(snapshot.snapshot_id, part),
                    )
                    for stream, part in zip(parts, plan.parts, strict=True)
                ]  # fmt: skip
                _wait(
                    futures, work, conn, info, locked, options, counter, server,
                    conflicts_before,
                )  # fmt: skip
            table_parts = [_table_part(s, p) for s, p in zip(parts, plan.parts, strict=True)]
            tables = _merge_counts(counter.rows(), table_parts, set(plan.counted_by_copy()))
            # The snapshot was held for the whole dump only if its connection is alive now.
            ensure_alive(conn, info)
            work.complete(options.bucket)
        except BaseException:
            counter.stop()
            work.abort()
            raise
    with storage.withdrawn_on_failure(options.bucket, [*work.keys(), keys.roles]):
        roles_object = store_small(
            options.bucket, keys.roles, needed_roles.to_json(), level=options.level
        )
        manifest = ManifestV2(
            name=name,
            database=server.database,
            run_id=keys.run_id,
            manifest_key=keys.manifest,
            compression=Compression(level=options.level, threads=0),
            pg_dump_version=pg_dump.version,
            server_version=server.server_version,
            server_version_num=server.server_version_num,
            snapshot=snapshot.snapshot_id,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            duration_seconds=round(time.monotonic() - started, 3),
            tool_version=__version__,
            jobs=jobs,
            stream_threshold_bytes=options.stream_threshold_bytes,
            schema_archive=_object(schema),
            data_archive=_object(data),
            parts=table_parts,
            roles=roles_object,
            relations=plan.relations,
            extensions=extensions,
            tablespaces=tablespaces,
            collations=collations,
            database_locale=server.database_locale,
            tables=tables,
        )
        storage.put_if_absent(options.bucket, keys.manifest, manifest.to_json())
    return manifest


def store_small(bucket: str, key: str, raw: bytes, *, level: int) -> StoredObject:
    """A small object (the roles), compressed and checksummed like the streams."""
    stored = zstandard.ZstdCompressor(level=level, write_checksum=True).compress(raw)
    storage.put_if_absent(bucket, key, stored, content_type="application/zstd")
    return StoredObject(
        key=key,
        sha256=hashlib.sha256(stored).hexdigest(),
        stored_bytes=len(stored),
        raw_bytes=len(raw),
    )


@contextlib.contextmanager
def _stopping_on_error(work: _Streams):
    """Inside the executors: an error (SIGTERM, SIGINT) stops the children before the
    executors wait for their threads, and streams not started yet never start."""
    try:
        yield
    except BaseException:
        work.fail()
        raise


def _wait(
    futures: list, work: _Streams, conn: psycopg.Connection, info: ConnectionInfo,
    locked: list[blockers.Table], options: BackupOptions, counter: RowCounter,
    server: ServerInfo, conflicts_before: int | None,
) -> None:  # fmt: skip
    """Every stream's end; the first real failure is the one reported, or its root cause:
    the server restarted or gone (retryable), the leader's snapshot lost (a child then
    cannot import it), a lock held by someone else (named by a diagnosis), or a replica
    that ended a session to replay the primary (``conflicts_before``: its count of such,
    before the streams began)."""
    database = server.database
    failures: list[BaseException] = []
    for future in as_completed(futures):
        try:
            future.result()
        except _Cancelled:
            continue
        except BaseException as exc:
            work.fail()
            failures.append(exc)
    if not failures:
        if work.failed.is_set():  # cannot happen: whoever sets it has failed
            raise DumpFailedError(
                "a stream of the backup was stopped without a reported cause",
                hint="nothing was stored; run the backup again and report this",
            )
        return
    first = failures[0]
    if (gone := went_away(info, server, failures)) is not None:
        raise gone from None
    if (error := counter.failure()) is not None:
        raise error
    if any("snapshot" in str(failure).lower() for failure in failures):
        counter.stop()  # the connection is ours alone again
        try:
            conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise snapshot_lost(info, exc, while_="while the dump was streaming") from None
    for failure in failures:
        text = str(failure)
        if "could not obtain lock" in text or blockers.pg_dump_lock_timeout(text):
            raise blockers.diagnose(
                info, locked, waited_seconds=options.lock_wait_timeout_seconds, database=database
            ) from None
        if isinstance(failure, DumpFailedError) and (
            refusal := row_security_refusal(failure.message)
        ):
            raise read_denied(refusal, what=database, role=conn.info.user) from None
        if (conflict := replica_conflict(failure, info, None, database)) is not None:
            raise conflict from None
        if isinstance(failure, DumpFailedError) and refused_for_lack_of_slots(failure.message):
            raise ConnectionLimitError(
                f"the backup of {database}: {failure.message}",
                hint="nothing was stored; lower --jobs, end idle sessions, or raise that limit",
            ) from None
    # No stream's text said why: the replica's count may.
    if (conflict := replica_conflict(first, info, conflicts_before, database)) is not None:
        raise conflict from None
    raise first


def _table_part(stream: _Stream, part: PlannedPart) -> TablePart:
    assert stream.result is not None and stream.process is not None
    rows = rows_from(stream.process.stderr_tail())
    if rows is None or rows != stream.result.newlines:
        raise DumpFailedError(
            f"{stream.what}: COPY reported {rows} rows but {stream.result.newlines} lines "
            "were streamed",
            hint="nothing was stored; run the backup again and report this",
        )
    return TablePart(
        **_object(stream).model_dump(),
        schema=part.schema_name,
        table=part.table,
        columns=part.columns,
        predicate=part.predicate,
        rows=rows,
        freeze=part.freeze,
    )


def _merge_counts(
    counted: list[TableRows], parts: list[TablePart], by_copy: set[tuple[str, str]]
) -> list[TableRows]:
    """The leader's counts, plus the sums of the parts of the tables COPY counted."""
    streamed: dict[tuple[str, str], int] = {}
    for part in parts:
        key = (part.schema_name, part.table)
        if key in by_copy:
            streamed[key] = streamed.get(key, 0) + part.rows
    rows = [*counted, *(TableRows(schema=s, table=t, rows=n) for (s, t), n in streamed.items())]
    return sorted(rows, key=lambda r: (r.schema_name, r.table))
