"""A locked table fails a backup promptly and by name, with nothing stored; a restore's
lock waits on other sessions are bounded the same way."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg
import pytest

from pgautodumper import blockers, lock_watch
from pgautodumper.backup import BackupOptions, run_backup
from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import LockTimeoutError
from tests.conftest import BACKUP_PASSWORD, start_cli
from tests.faults import faulty_proxy

SQL = """
CREATE TABLE accounts (id int PRIMARY KEY, balance numeric);
INSERT INTO accounts SELECT g, g * 10 FROM generate_series(1, 1000) g;
CREATE TABLE audit (id int, note text);
INSERT INTO audit SELECT g, 'n' || g FROM generate_series(1, 100) g;
"""


def assert_nothing_stored(s3, bucket: str) -> None:
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@contextmanager
def migration(url: str, statement: str, *, name: str) -> Iterator[int]:
    """A session named ``name`` that ran ``statement`` in a transaction left open; its pid."""
    with psycopg.connect(url, application_name=name) as conn:
        conn.execute(statement)
        pid = conn.info.backend_pid
        try:
            yield pid
        finally:
            conn.rollback()


def wait_until(condition: Callable[[], bool], what: str, *, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting until {what}")
        time.sleep(0.05)


def locks_on(admin: psycopg.Connection, table: str, *, mode: str, granted: bool, app: str) -> int:
    row = admin.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.relation = %s::regclass AND l.mode = %s AND l.granted = %s"
        " AND a.application_name = %s",
        (table, mode, granted, app),
    ).fetchone()
    return row[0] if row else 0


def test_a_table_held_by_a_migration_fails_the_backup_by_name(cli, make_database, bucket, s3):
    source = make_database(SQL)
    with migration(
        source, "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", name="migration-42"
    ) as pid:
        result = cli(
            "backup", "--database-url", source, "--bucket", bucket, "--name", "locked",
            "--lock-wait-timeout", "2",
            timeout=300,
        )  # fmt: skip

    assert result.returncode == 15, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("pgautodumper: error")]
    assert len(error) == 1, result.stderr
    assert "public.accounts" in error[0]
    assert f"pid {pid}" in error[0]
    assert "'migration-42'" in error[0]
    assert "AccessExclusiveLock" in error[0]
    assert "in a transaction open for" in error[0]
    assert "lock_wait_timeout_seconds" in error[0]  # the hint
    assert "Traceback" not in result.stderr
    assert BACKUP_PASSWORD not in result.stderr + result.stdout
    assert_nothing_stored(s3, bucket)


def test_the_lock_step_batches_tables_under_one_deadline(make_database, bucket, s3, monkeypatch):
    """Many batches share one deadline; the blocked table sits in the last one."""
    tables = "".join(f"CREATE TABLE t{i:02d} (x int);" for i in range(7))
    source = make_database(tables)
    monkeypatch.setattr(blockers, "LOCK_BATCH", 2)
    with (
        migration(source, "LOCK TABLE t06 IN ACCESS EXCLUSIVE MODE", name="ddl") as pid,
        pytest.raises(LockTimeoutError) as caught,
    ):
        run_backup(
            ConnectionInfo.from_url(source),
            BackupOptions(bucket=bucket, name="batched", lock_wait_timeout_seconds=1),
        )
    message = str(caught.value)
    assert "table public.t06" in message and f"pid {pid}" in message and "'ddl'" in message
    assert_nothing_stored(s3, bucket)


def test_pg_dump_queued_behind_a_migration_fails_by_name(make_database, bucket, s3, moto_server):
    """The leader holds its locks; a migration's ACCESS EXCLUSIVE request queues behind
    them, and pg_dump's own lock requests queue behind that: pg_dump's lock wait expires.

    The proxy holds CreateMultipartUpload (the step between the leader's locks and
    pg_dump's start) until the migration is queued: no race, whatever the speed.
    """
    source = make_database(SQL)
    queued = threading.Event()

    def hold_upload_start(method: str, path: str) -> bool:
        if method == "POST" and path.endswith("?uploads"):
            queued.wait(120)
        return False

    with (
        psycopg.connect(source, autocommit=True) as admin,
        faulty_proxy(moto_server, hold_upload_start) as proxy,
    ):
        process = start_cli(
            "backup", "--database-url", source, "--bucket", bucket, "--name", "queued",
            "--lock-wait-timeout", "2", env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip
        try:
            wait_until(
                lambda: (
                    locks_on(
                        admin, "accounts", mode="AccessShareLock", granted=True, app="pgautodumper"
                    )
                    > 0
                ),
                "the backup's leader holds its locks",
            )
            pids: list[int] = []
            ddl = threading.Thread(target=_queue_ddl, args=(source, pids), daemon=True)
            ddl.start()
            wait_until(
                lambda: (
                    locks_on(
                        admin, "accounts", mode="AccessExclusiveLock", granted=False, app="deploy"
                    )
                    > 0
                ),
                "the migration is queued",
            )
        finally:
            queued.set()
        _, stderr = process.communicate(timeout=300)
        ddl.join(timeout=60)

    assert process.returncode == 15, stderr
    assert "public.accounts" in stderr and "'deploy'" in stderr and f"pid {pids[0]}" in stderr
    assert "is queued for AccessExclusiveLock" in stderr
    assert "Traceback" not in stderr
    assert_nothing_stored(s3, bucket)


def _queue_ddl(url: str, pids: list[int]) -> None:
    """A migration that waits for ACCESS EXCLUSIVE, then gives up its transaction."""
    with psycopg.connect(url, application_name="deploy") as conn:
        pids.append(conn.info.backend_pid)
        conn.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
        conn.rollback()


def test_long_lock_holders_names_old_transactions_that_lock_tables(make_database):
    source = make_database(SQL)
    info = ConnectionInfo.from_url(source)
    with (
        migration(source, "LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", name="mig-1") as pid,
        migration(source, "SELECT 1", name="idle-no-locks"),
        migration(source, "INSERT INTO audit VALUES (0, 'x')", name="writer") as writer,
        connect(info) as conn,
    ):
        warnings = blockers.long_lock_holders(conn, 0)
        none_old_enough = blockers.long_lock_holders(conn, 3600)

    assert len(warnings) == 2, warnings
    first = next(w for w in warnings if f"pid {pid} " in w)
    assert "'mig-1'" in first and "public.accounts (AccessExclusiveLock)" in first
    assert "in a transaction open for" in first and "blocks a backup" in first
    second = next(w for w in warnings if f"pid {writer} " in w)
    assert "public.audit (RowExclusiveLock)" in second and "blocks a backup" not in second
    assert none_old_enough == []


@pytest.mark.parametrize(
    ("stderr", "expected"),
    [
        (
            "pg_dump: error: query failed: ERROR:  canceling statement due to statement timeout"
            " | pg_dump: detail: Query was: LOCK TABLE public.accounts IN ACCESS SHARE MODE",
            True,
        ),
        (
            "pg_dump: [archiver (db)] query failed: ERROR:  canceling statement due to "
            "statement timeout | pg_dump: [archiver (db)] query was: LOCK TABLE public.a, "
            "public.b IN ACCESS SHARE MODE",
            True,
        ),
        ("pg_dump: error: query failed: ERROR:  permission denied for table accounts", False),
        ('pg_dump: error: Dumping the contents of table "t" failed: statement timeout', False),
    ],
)
def test_pg_dump_lock_timeouts_are_recognised(stderr: str, expected: bool):
    assert blockers.pg_dump_lock_timeout(stderr) is expected


SHOP = """
CREATE TABLE customers (id int PRIMARY KEY, name text);
INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g;
CREATE TABLE orders (id int PRIMARY KEY, customer_id int REFERENCES customers, amount int);
INSERT INTO orders SELECT g, 1 + g % 100, g FROM generate_series(1, 5000) g;
"""

# The sessions of a restore (lock_watch.tagged).
_RESTORE_SESSIONS = (
    "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'pgautodumper restore %'"
)


def _restore_error(result) -> str:
    assert result.returncode == 15, result.stderr
    assert "Traceback" not in result.stderr
    assert BACKUP_PASSWORD not in result.stderr + result.stdout
    error = [line for line in result.stderr.splitlines() if line.startswith("pgautodumper: error")]
    assert len(error) == 1, result.stderr
    return error[0]


def _no_restore_session_left(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as admin:
        wait_until(
            lambda: admin.execute(_RESTORE_SESSIONS).fetchone() == (0,),
            "the restore's sessions are gone",
        )


def test_a_restore_blocked_by_an_open_transaction_fails_by_name_then_runs_again(
    cli, make_database, bucket
):
    """The everyday restore into a live database: the restored table's foreign key needs
    SHARE ROW EXCLUSIVE on the table it references, which an application's transaction
    left open after a write blocks for as long as it stays open."""
    source = make_database(SHOP)
    assert (
        cli("backup", "--database-url", source, "--bucket", bucket, "--name", "shop").returncode
        == 0
    )
    with psycopg.connect(source, autocommit=True) as conn:
        conn.execute("DROP TABLE orders")
    restore = (
        "restore", "--bucket", bucket, "--latest", "--name", "shop", "--database-url", source,
        "--table", "public.orders", "--jobs", "2",
    )  # fmt: skip

    with migration(source, "UPDATE customers SET name = name WHERE id = 1", name="app-7") as pid:
        error = _restore_error(cli(*restore, "--lock-wait-timeout", "2", timeout=300))
        _no_restore_session_left(source)  # nothing of ours still waits

    assert "waited 2s for ShareRowExclusiveLock on public.customers" in error
    assert "ADD CONSTRAINT orders_customer_id_fkey FOREIGN KEY" in error  # what waited
    assert f"pid {pid} (application_name 'app-7'" in error
    assert "holds RowExclusiveLock on public.customers" in error
    assert "idle in transaction: UPDATE customers" in error
    assert f"pg_terminate_backend({pid})" in error and "--lock-wait-timeout" in error

    again = cli(*restore, "--clean")  # once the transaction ended
    assert again.returncode == 0, again.stderr
    with psycopg.connect(source, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM orders").fetchone() == (5000,)
        assert conn.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass"
            " AND contype = 'f'"
        ).fetchone() == (1,)


def test_a_clean_restore_waits_for_a_reader_no_longer_than_the_lock_wait(
    cli, make_database, bucket
):
    """Format 1, pg_restore --clean: its DROPs need ACCESS EXCLUSIVE, which a reader's
    open transaction blocks."""
    source = make_database(SHOP)
    backed_up = cli(
        "backup", "--database-url", source, "--bucket", bucket, "--name", "f1", "--format", "1"
    )
    assert backed_up.returncode == 0, backed_up.stderr

    restore = (
        "restore", "--bucket", bucket, "--latest", "--name", "f1", "--database-url", source,
        "--clean", "--lock-wait-timeout", "2",
    )  # fmt: skip
    with migration(source, "SELECT count(*) FROM orders", name="report") as pid:
        error = _restore_error(cli(*restore, timeout=300))
        _no_restore_session_left(source)

    assert "for AccessExclusiveLock on public.orders" in error
    assert f"pid {pid} (application_name 'report'" in error
    assert "holds AccessShareLock on public.orders" in error


def _read_orders(url: str, application_name: str, outcome: list[object]) -> None:
    with psycopg.connect(url, application_name=application_name, autocommit=True) as conn:
        try:
            outcome.append(conn.execute("SELECT count(*) FROM orders").fetchone())
        except psycopg.Error as exc:
            outcome.append(exc)


def test_the_watch_counts_only_waits_on_sessions_outside_the_restore(make_database):
    source = make_database(SHOP)
    with lock_watch.watching(ConnectionInfo.from_url(source), 1) as watch:
        ours = watch.target.params["application_name"]
        own_wait: list[object] = []
        with migration(source, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", name=ours):
            reader = threading.Thread(target=_read_orders, args=(source, ours, own_wait))
            reader.start()
            reader.join(timeout=3)  # three lock waits long: a wait between our own sessions
        reader.join(timeout=60)
        assert own_wait == [(5000,)] and watch.expired is None

        cancelled: list[object] = []
        with migration(source, "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE", name="ddl") as pid:
            reader = threading.Thread(target=_read_orders, args=(source, ours, cancelled))
            reader.start()
            reader.join(timeout=60)
        assert len(cancelled) == 1 and isinstance(cancelled[0], psycopg.errors.QueryCanceled)
        assert watch.expired is not None
        assert f"pid {pid} (application_name 'ddl'" in watch.expired.message
        assert "for AccessShareLock on public.orders" in watch.expired.message
        assert "SELECT count(*) FROM orders" in watch.expired.message
