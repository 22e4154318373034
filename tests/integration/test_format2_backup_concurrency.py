"""A format-2 backup under concurrent activity: writes, DDL, killed children, S3 failures.

The windows are made deterministic, not timed: the test holds a table lock the
backup's leader must wait for (between its snapshot and its locks), or the
proxy holds the COPY parts' uploads, so a part cannot end (zstd stops reading,
psql's pipe fills, its transaction and lock stay open) until the test has acted.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import signal
import threading

import psycopg
import pytest

from tests.faults import fail_upload_parts_after, faulty_proxy
from tests.integration.test_format2_backup_support import (
    HeldUploads,
    MiB,
    assert_nothing_stored,
    check_objects,
    children,
    clone_database,
    cmdline,
    copy_parts,
    data_archive,
    database_url,
    error_line,
    finish,
    lock_waiters,
    manifest_of,
    part_rows,
    restore_by_hand,
    sessions,
    start_backup,
    wait_until,
)
from tests.pgcompare import fingerprint

ROWS = 120_000
# About 47 MB of table, 42 MB of COPY text (base64 of random bytes) that zstd keeps
# at about 75%: a part of half of it stores some 15 MiB, so with its upload held
# (two 5 MiB part buffers full) a part is far from its end.
BUSY = """
CREATE TABLE stream_me (id int PRIMARY KEY, payload text) WITH (autovacuum_enabled = off);
CREATE TABLE small_t (id int PRIMARY KEY, v text);
INSERT INTO small_t SELECT g, 'v' || g FROM generate_series(1, 100) g;
"""


def fill(url: str) -> None:
    """stream_me's rows, made here: random bytes are slow to make in SQL."""
    with (
        psycopg.connect(url) as conn,
        conn.cursor() as cursor,
        cursor.copy("COPY stream_me (id, payload) FROM STDIN") as copy,
    ):
        for start in range(1, ROWS + 1, 10_000):
            payloads = base64.b64encode(os.urandom(258 * 10_000)).decode()
            copy.write(
                "".join(
                    f"{start + i}\t{payloads[i * 344 : (i + 1) * 344]}\n"
                    for i in range(min(10_000, ROWS + 1 - start))
                )
            )


class Busy:
    def __init__(self, template: str, table_bytes: int) -> None:
        self.template = template
        self.table_bytes = table_bytes

    def halves(self) -> list[str]:
        """Flags for a plan of two parts of stream_me."""
        return ["--stream-threshold-bytes", str(-(-self.table_bytes // 2))]

    def whole(self) -> list[str]:
        """Flags for a plan of one part: all of stream_me."""
        return ["--stream-threshold-bytes", str(self.table_bytes)]


@pytest.fixture(scope="module")
def busy(pg):
    template = f"f2_busy_{secrets.token_hex(4)}"
    pg.psql(f'CREATE DATABASE "{template}" TEMPLATE template0')
    pg.psql(BUSY, dbname=template)
    fill(database_url(pg, template))
    size = int(pg.psql("SELECT pg_table_size('stream_me')", dbname=template).strip())
    yield Busy(template, size)
    pg.psql(f'DROP DATABASE IF EXISTS "{template}"')


def dbname_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


def no_pg_dump_left(conn: psycopg.Connection, dbname: str) -> bool:
    """Both pg_dump runs are over (they lock every table at their start)."""
    return not sessions(conn, dbname, "pg_dump")


class Migration(threading.Thread):
    """A session named 'deploy' running one DDL statement, waiting as long as it must."""

    def __init__(self, url: str, statement: str) -> None:
        super().__init__(daemon=True)
        self.url, self.statement = url, statement
        self.pid: int | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with psycopg.connect(self.url, autocommit=True, application_name="deploy") as conn:
                self.pid = conn.info.backend_pid
                conn.execute(self.statement)
        except BaseException as exc:  # reported by the test
            self.error = exc

    def finished(self) -> None:
        self.join(timeout=60)
        assert not self.is_alive(), "the DDL never finished"
        assert self.error is None, self.error


# -- 1. rows written during the backup ------------------------------------------------------


def test_rows_written_mid_stream_are_in_no_part_and_no_count(pg, busy, bucket, s3, moto_server):
    """One job, two ctid ranges: while part 1 streams (its upload held), rows are inserted,
    updated (new versions in place or at the end) and deleted. The new rows land at the
    end of the heap, in part 2's open-ended range, which is read only afterwards: the
    snapshot alone keeps them out. The parts, the counts and a restore hold exactly the
    snapshot's rows."""
    source = clone_database(pg, busy.template)
    dbname = dbname_of(source)
    before = fingerprint(source)
    held = HeldUploads(copy_parts)
    with (
        faulty_proxy(moto_server, held) as proxy,
        psycopg.connect(source, autocommit=True) as other,
    ):
        process = start_backup(
            source, bucket, *busy.halves(), "--jobs", "1", env={"AWS_ENDPOINT_URL": proxy}
        )
        try:
            held.wait_for(1)
            assert len(sessions(other, dbname, "psql")) == 1  # part 1; part 2 not started
            other.execute(
                f"INSERT INTO stream_me SELECT g, 'new' FROM generate_series({ROWS + 1}, "
                f"{ROWS + 20000}) g"
            )
            other.execute("UPDATE stream_me SET payload = 'changed' WHERE id % 100 = 0")
            other.execute("DELETE FROM stream_me WHERE id % 100 = 1")
            other.execute("INSERT INTO small_t VALUES (1001, 'new')")
        finally:
            held.release()
        code, stdout, stderr = finish(process)
        first_new_block = other.execute(
            "SELECT min((ctid::text::point)[0]) FROM stream_me WHERE id > %s", (ROWS,)
        ).fetchone()[0]

    assert code == 0, stderr
    manifest = manifest_of(stdout)
    first, last = manifest.parts
    assert first.predicate.startswith("ctid <") and last.predicate.startswith("ctid >=")
    assert first_new_block >= int(re.search(r"'\((\d+),0\)'", last.predicate)[1])
    check_objects(s3, bucket, manifest)  # the parts' lines are their COPY row counts
    rows = [row for part in manifest.parts for row in part_rows(s3, bucket, part)]
    assert sorted(int(row[0]) for row in rows) == list(range(1, ROWS + 1))
    assert not {row[1] for row in rows} & {"new", "changed"}
    assert manifest.row_counts() == {"public.stream_me": ROWS, "public.small_t": 100}
    assert fingerprint(restore_by_hand(pg, s3, bucket, manifest)) == before


# -- 2. DDL ---------------------------------------------------------------------------------

WINDOW = """
CREATE TABLE a_gate (id int);
CREATE TABLE stream_me (id int PRIMARY KEY, payload text);
INSERT INTO stream_me SELECT g, repeat(md5(g::text), 3) FROM generate_series(1, 12000) g;
"""


@pytest.mark.parametrize(
    ("ddl", "failure"),
    [
        ("TRUNCATE stream_me", "table(s) public.stream_me were truncated or rewritten"),
        ("ALTER TABLE stream_me ALTER COLUMN id TYPE bigint", "were truncated or rewritten"),
        ("DROP TABLE stream_me", "was dropped while the backup started"),
        ("ALTER TABLE stream_me DROP COLUMN payload", 'column "payload" does not exist'),
        ("ALTER TABLE stream_me ADD COLUMN extra int DEFAULT 7", None),
    ],
    ids=["truncate", "alter-type", "drop-table", "drop-column", "add-column"],
)
def test_ddl_between_the_snapshot_and_the_locks(pg, make_database, bucket, s3, ddl, failure):
    """The leader has its snapshot and waits for a lock on a_gate (held here) before it can
    lock stream_me: DDL on stream_me commits in that window. A backup of the snapshot that
    is still right (ADD COLUMN) completes; any other fails by name, nothing stored."""
    source = make_database(WINDOW)
    before = fingerprint(source)
    with psycopg.connect(source) as gate, psycopg.connect(source, autocommit=True) as other:
        gate.execute("LOCK TABLE a_gate IN ACCESS EXCLUSIVE MODE")
        process = start_backup(
            source, bucket, "--stream-threshold-bytes", str(MiB), "--lock-wait-timeout", "120"
        )
        try:
            wait_until(
                lambda: lock_waiters(other, "a_gate", "pgautodumper"),
                "the leader took its snapshot and waits for its locks",
            )
            other.execute(ddl)
        finally:
            gate.rollback()
        code, stdout, stderr = finish(process)

    if failure is None:
        assert code == 0, stderr
        manifest = manifest_of(stdout)
        check_objects(s3, bucket, manifest)
        assert {tuple(p.columns) for p in manifest.parts} == {("id", "payload")}
        assert manifest.row_counts()["public.stream_me"] == 12000
        assert fingerprint(restore_by_hand(pg, s3, bucket, manifest)) == before
    else:
        assert code == 21, stderr  # DumpFailedError
        assert failure in error_line(stderr)
        assert "nothing was stored" in stderr
        assert_nothing_stored(s3, bucket)


def test_a_streamed_table_held_by_a_migration_fails_in_bounded_time(make_database, bucket, s3):
    """A migration holds ACCESS EXCLUSIVE on a table big enough to stream: the leader's
    bounded lock step fails by name (planning, which measures tables, never waits)."""
    source = make_database(WINDOW)
    with psycopg.connect(source, application_name="migration-7") as migration:
        migration.execute("LOCK TABLE stream_me IN ACCESS EXCLUSIVE MODE")
        code, _, stderr = finish(
            start_backup(
                source, bucket, "--stream-threshold-bytes", str(MiB), "--lock-wait-timeout", "1"
            )
        )
        pid = migration.info.backend_pid
        migration.rollback()

    assert code == 15, stderr  # LockTimeoutError
    error = error_line(stderr)
    assert "public.stream_me" in error and f"pid {pid}" in error and "'migration-7'" in error
    assert_nothing_stored(s3, bucket)


@pytest.mark.parametrize(
    "ddl",
    [
        "TRUNCATE stream_me",
        "ALTER TABLE stream_me ALTER COLUMN id TYPE bigint",
        "DROP TABLE stream_me",
    ],
    ids=["truncate", "alter-type", "drop-table"],
)
def test_ddl_queued_before_a_part_starts_fails_the_backup_by_name(
    pg, busy, bucket, s3, moto_server, ddl
):
    """One job, two parts: while part 1 streams (its upload held), DDL queues behind the
    backup's locks. Part 2's LOCK ... NOWAIT then fails: LockTimeoutError naming the DDL
    session, nothing stored, and the DDL runs once the backup has let go."""
    source = clone_database(pg, busy.template)
    dbname = dbname_of(source)
    held = HeldUploads(copy_parts)
    migration = Migration(source, ddl)
    with (
        faulty_proxy(moto_server, held) as proxy,
        psycopg.connect(source, autocommit=True) as other,
    ):
        process = start_backup(
            source, bucket, *busy.halves(), "--jobs", "1", "--lock-wait-timeout", "120",
            env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip
        try:
            held.wait_for(1)
            wait_until(lambda: no_pg_dump_left(other, dbname), "both pg_dump runs ended")
            migration.start()
            wait_until(lambda: lock_waiters(other, "stream_me", "deploy"), "the DDL is queued")
        finally:
            held.release()
        code, _, stderr = finish(process)
    migration.finished()

    assert code == 15, stderr  # LockTimeoutError
    error = error_line(stderr)
    assert "public.stream_me" in error and f"pid {migration.pid}" in error, error
    assert "'deploy'" in error and "is queued for AccessExclusiveLock" in error, error
    assert_nothing_stored(s3, bucket)


def test_ddl_queued_while_every_part_holds_its_lock_waits_for_the_backup(
    pg, busy, bucket, s3, moto_server
):
    """Two jobs, two parts, both mid-COPY: a TRUNCATE queues behind their locks and the
    leader's, the backup completes with the snapshot's rows, then the TRUNCATE runs."""
    source = clone_database(pg, busy.template)
    dbname = dbname_of(source)
    held = HeldUploads(copy_parts)
    migration = Migration(source, "TRUNCATE stream_me")
    with (
        faulty_proxy(moto_server, held) as proxy,
        psycopg.connect(source, autocommit=True) as other,
    ):
        process = start_backup(
            source, bucket, *busy.halves(), "--jobs", "2", env={"AWS_ENDPOINT_URL": proxy}
        )
        try:
            held.wait_for(2)
            wait_until(lambda: no_pg_dump_left(other, dbname), "both pg_dump runs ended")
            migration.start()
            wait_until(lambda: lock_waiters(other, "stream_me", "deploy"), "the DDL is queued")
        finally:
            held.release()
        code, stdout, stderr = finish(process)
        migration.finished()
        truncated = other.execute("SELECT count(*) FROM stream_me").fetchone()[0]

    assert code == 0, stderr
    assert truncated == 0  # the DDL ran, after the backup
    manifest = manifest_of(stdout)
    assert len(manifest.parts) == 2
    check_objects(s3, bucket, manifest)  # the parts' lines are their COPY row counts
    assert manifest.row_counts() == {"public.stream_me": ROWS, "public.small_t": 100}
    rows = [row for part in manifest.parts for row in part_rows(s3, bucket, part)]
    assert sorted(int(row[0]) for row in rows) == list(range(1, ROWS + 1))


# -- 3. a child killed, S3 failing, the backup stopped --------------------------------------


@pytest.mark.parametrize(
    ("child", "holds", "flags", "section"),
    [
        ("psql", copy_parts, "halves", ""),
        ("pg_dump", data_archive, "none", "--section=data"),
    ],
    ids=["psql-worker", "pg_dump-data-archive"],
)
def test_a_child_killed_mid_stream_fails_the_backup_and_stores_nothing(
    pg, busy, bucket, s3, moto_server, child, holds, flags, section
):
    """SIGKILL (the OOM killer, an operator) on one child while its stream is held: the
    backup fails with DumpFailedError naming the signal, never completes anything.

    With nothing streamed by COPY, the remaining-data archive is the big stream: a
    killed pg_dump must not pass for one that ended (a truncated archive)."""
    source = clone_database(pg, busy.template)
    plan = busy.halves() if flags == "halves" else ["--stream-threshold-bytes", str(1024 * MiB)]
    held = HeldUploads(holds)
    with faulty_proxy(moto_server, held) as proxy:
        process = start_backup(
            source, bucket, *plan, "--jobs", "2", env={"AWS_ENDPOINT_URL": proxy}
        )
        try:
            held.wait_for(1)
            victims = [pid for pid in children(process.pid, child) if section in cmdline(pid)]
            assert victims, "no child to kill"
            os.kill(victims[0], signal.SIGKILL)
        finally:
            held.release()
        code, _, stderr = finish(process)

    assert code == 21, stderr  # DumpFailedError
    assert f"{child} was killed by SIGKILL" in error_line(stderr)
    assert_nothing_stored(s3, bucket)


def copy_part_uploads_fail_after(count: int):
    """fail_upload_parts_after, counting (and failing) only the COPY parts' uploads."""
    failing = fail_upload_parts_after(count)
    return lambda method, path: ".part-" in path and failing(method, path)


def test_s3_failing_mid_part_aborts_every_upload(pg, busy, bucket, s3, moto_server):
    """The second UploadPart of a COPY part fails (after retries): StorageUnavailableError,
    every upload aborted, nothing stored."""
    source = clone_database(pg, busy.template)
    with faulty_proxy(moto_server, copy_part_uploads_fail_after(1)) as proxy:
        code, _, stderr = finish(
            start_backup(
                source, bucket, *busy.halves(), "--jobs", "2",
                env={"AWS_ENDPOINT_URL": proxy, "AWS_MAX_ATTEMPTS": "2"},
            )
        )  # fmt: skip

    assert code == 34, stderr  # StorageUnavailableError
    error = error_line(stderr)
    assert "upload part of" in error and "InternalError" in error and ".part-" in error
    assert_nothing_stored(s3, bucket)


def test_sigterm_stops_every_child_at_once_and_stores_nothing(pg, busy, bucket, s3, moto_server):
    """SIGTERM (ECS StopTask) while the parts stream: the children are stopped without
    waiting for their streams to end, every upload is aborted, exit 130."""
    source = clone_database(pg, busy.template)
    held = HeldUploads(copy_parts)
    with faulty_proxy(moto_server, held) as proxy:
        process = start_backup(
            source, bucket, *busy.halves(), "--jobs", "2", env={"AWS_ENDPOINT_URL": proxy}
        )
        try:
            held.wait_for(2)
            process.send_signal(signal.SIGTERM)
            # Still held: only a backup that stops its children sees them go.
            wait_until(lambda: not children(process.pid, "psql"), "the COPY workers are stopped")
        finally:
            held.release()
        code, _, stderr = finish(process)

    assert code == 130, stderr
    assert "stopped by SIGTERM" in error_line(stderr)
    assert_nothing_stored(s3, bucket)
