"""Every way a Dump or Verify task fails reaches the execution and the notification by name.

Each test drives the real definition, handlers and task in the local runtime
into one failure, then asserts the execution's error name, the message in
its cause, and the notification: error name, message, next step (the error
class's own) and, for a task that ran, the link to its log stream, which
exists in the emulated CloudWatch Logs and holds the task's output.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from pgautodumper import errors
from pgautodumper.local.emulator import Emulator
from pgautodumper.local.run import LocalRunResult, run_in
from tests.conftest import BACKUP_PASSWORD
from tests.faults import faulty_proxy, writes

# Whole workflows on the emulator, mostly waiting on it: alongside the rest.
pytestmark = [pytest.mark.slow, pytest.mark.background]

TABLES = """
CREATE TABLE items (id int PRIMARY KEY, label text);
INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 500) g;
CREATE TABLE notes (id int PRIMARY KEY, body text);
INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 100) g;
"""


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture
def run(emu: Emulator, capfd):
    def go(url: str, request: dict | None = None, **kwargs) -> LocalRunResult:
        emu.reset()
        try:
            result = run_in(
                emu, url, {"name": "items", "verify": False, **(request or {})}, **kwargs
            )
        finally:
            assert emu.tasks is not None
            emu.tasks.on_start = None
        captured = capfd.readouterr()
        evidence = json.dumps(
            [result.execution.history, result.notifications, result.task_logs], default=str
        )
        assert BACKUP_PASSWORD not in evidence + captured.out + captured.err
        return result

    return go


def assert_named_failure(
    emu: Emulator,
    result: LocalRunResult,
    error: type[errors.PgautodumperError],
    *needles: str,
    backed_up: bool = False,
) -> dict:
    """The execution, its cause and the notification all name ``error``; returns the cause.

    ``backed_up``: the failure came after a complete backup (a verify failed).
    """
    assert result.execution.status == "FAILED", result.execution.visited
    assert result.execution.error == error.__name__, result.execution.cause
    cause = json.loads(result.execution.cause)
    assert cause["errorType"] == error.__name__ and cause["nextStep"] == error.next_step
    for needle in needles:
        assert needle in cause["errorMessage"], cause["errorMessage"]
    [notification] = result.notifications
    assert f"FAILED: {error.__name__}" in notification["subject"]
    body = notification["message"]
    assert f"Error: {error.__name__}" in body
    assert f"Message: {cause['errorMessage']}" in body
    assert f"Next steps: {error.next_step}" in body
    assert "ReleaseLockAfterFailure" in result.execution.visited
    assert not any(key.endswith(".lock") for key in result.objects)
    assert any(key.endswith(".manifest.json") for key in result.objects) == backed_up
    assert (
        emu.client("s3").list_multipart_uploads(Bucket=result.stack.bucket).get("Uploads", []) == []
    )
    return cause


def assert_log_linked(emu: Emulator, result: LocalRunResult, cause: dict) -> list[str]:
    """The notification links the task's log stream, and that stream holds its output."""
    assert f"Task log: {cause['log_url']}" in result.notifications[0]["message"]
    task_id = cause["task_arn"].rsplit("/", 1)[-1]
    logs = emu.client("logs")
    group = logs.describe_log_groups(logGroupNamePrefix="/pgautodumper/")["logGroups"][-1]
    events = logs.get_log_events(
        logGroupName=group["logGroupName"], logStreamName=f"task/pgautodumper/{task_id}"
    )["events"]
    assert events
    return [event["message"] for event in events]


def state_output(result: LocalRunResult, state: str) -> dict:
    for event in result.execution.history:
        details = event.get("stateExitedEventDetails")
        if details and details["name"] == state:
            return json.loads(details["output"])
    raise AssertionError(f"{state} never exited")


@contextmanager
def holding(url: str, sql: str) -> Iterator[psycopg.Connection]:
    """A session (a migration) that holds what ``sql`` takes until the block ends."""
    with psycopg.connect(url, application_name="migration-42") as conn:
        conn.execute(sql)
        yield conn
        conn.rollback()


def wait_for_lock_wait(url: str) -> None:
    """Until a session of the backup waits for a lock (bounded by the test's own timeout).

    In this test's database only: pg_stat_activity shows the whole server, where other
    tests (in the background) wait on locks of their own."""
    with psycopg.connect(url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND application_name <> 'migration-42' AND datname = current_database()"
        ).fetchone():
            time.sleep(0.05)


def test_exit_137_is_a_task_out_of_memory_error(emu, run, make_database) -> None:
    url = make_database(TABLES)

    def kill_once_waiting(command: list[str]) -> None:
        # Like the kernel's OOM killer: SIGKILL, while the dump waits on a locked table.
        import threading

        def kill() -> None:
            wait_for_lock_wait(url)
            task = emu.tasks.tasks[-1]
            os.kill(task.pid, signal.SIGKILL)

        threading.Thread(target=kill, daemon=True).start()

    emu.tasks.on_start = kill_once_waiting
    with holding(url, "BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE"):
        result = run(url, {"lock_wait_timeout_seconds": 600})
    cause = assert_named_failure(emu, result, errors.TaskOutOfMemoryError, "exit code 137")
    assert cause["exit_code"] == 137
    assert_log_linked(emu, result, cause)


def test_a_task_that_never_starts_is_named_with_ecs_stop_reason(emu, run, make_database) -> None:
    result = run(make_database(TABLES), image="registry.example/pgautodumper:missing")
    cause = assert_named_failure(
        emu, result, errors.TaskStartFailedError, "never started", "CannotPullContainerError"
    )
    assert "exit_code" not in cause


def test_a_pg_dump_failure_is_a_dump_failed_error(emu, run, pg, make_database) -> None:
    url = make_database(TABLES + "CREATE SEQUENCE tickets;")
    dbname = url.rsplit("/", 1)[-1]
    # A reader with exactly the grants Preflight checks; it passes Preflight.
    reader, password = f"reader_{secrets.token_hex(3)}", f"pw-{secrets.token_hex(8)}"
    pg.psql(f"CREATE ROLE {reader} LOGIN PASSWORD '{password}'")
    pg.psql(
        f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader};"
        f"GRANT SELECT ON ALL SEQUENCES IN SCHEMA public TO {reader}",
        dbname=dbname,
    )
    reader_url = url.replace(f"pgad_backup:{BACKUP_PASSWORD}", f"{reader}:{password}")

    def migration_recreates_grants(command: list[str]) -> None:
        if command == ["backup"]:  # between Preflight and Dump: only pg_dump reads sequences
            pg.psql(f"REVOKE SELECT ON SEQUENCE tickets FROM {reader}", dbname=dbname)

    emu.tasks.on_start = migration_recreates_grants
    result = run(reader_url)
    cause = assert_named_failure(
        emu, result, errors.DumpFailedError, "pg_dump exited with code 1", "permission denied"
    )
    assert cause["exit_code"] == errors.DumpFailedError.exit_code
    assert any("tickets" in line for line in assert_log_linked(emu, result, cause))


def test_s3_access_denied_is_a_storage_access_denied_error(emu, run, make_database) -> None:
    # The task's role may not write (its outcome document included): the exit code names it.
    with faulty_proxy(emu.endpoint, writes, error=(403, "AccessDenied")) as proxy:
        result = run(make_database(TABLES), task_environment={"AWS_ENDPOINT_URL": proxy})
    cause = assert_named_failure(
        emu, result, errors.StorageAccessDeniedError, "exited with code 31"
    )
    lines = assert_log_linked(emu, result, cause)
    assert any("access denied (AccessDenied)" in line for line in lines)


def test_a_lock_timeout_names_the_table_and_the_blocking_session(emu, run, make_database) -> None:
    url = make_database(TABLES)
    with holding(url, "BEGIN; LOCK TABLE notes IN ACCESS EXCLUSIVE MODE") as migration:
        pid = migration.info.backend_pid
        result = run(url, {"lock_wait_timeout_seconds": 2})
    cause = assert_named_failure(
        emu, result, errors.LockTimeoutError, "notes", str(pid), "migration-42"
    )
    assert cause["exit_code"] == 15
    assert_log_linked(emu, result, cause)


def test_a_verify_mismatch_reports_the_tables_that_differ(emu, run, make_database) -> None:
    url = make_database(TABLES)

    def manifest_disagrees(command: list[str]) -> None:
        if command != ["verify"]:
            return
        s3 = emu.client("s3")
        bucket = s3.list_buckets()["Buckets"][-1]["Name"]
        [key] = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket=bucket)["Contents"]
            if o["Key"].endswith(".manifest.json")
        ]
        manifest = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        for table in manifest["tables"]:
            if table["table"] == "items":
                table["rows"] += 1
        s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())

    emu.tasks.on_start = manifest_disagrees
    result = run(url, {"verify": True})
    cause = assert_named_failure(
        emu,
        result,
        errors.VerifyMismatchError,
        "public.items: manifest 501 rows, restored 500",
        backed_up=True,
    )
    assert_log_linked(emu, result, cause)
    verify = state_output(result, "RecordFailedVerify")["verify"]
    assert verify["verdict"] == "failed" and verify["mismatched_tables"] == ["public.items"]
    assert verify["verified_key"].endswith(".dump.zst")
    verdicts = [key for key in result.objects if key.endswith(".verified.json")]
    assert len(verdicts) == 1  # recorded as failed, so it never counts as verified


def test_a_verify_whose_restore_fails_is_a_restore_failed_error(emu, run, make_database) -> None:
    # A classic: a CHECK constraint calls a function whose body names a table without its
    # schema; pg_restore runs with an empty search_path, so the restore fails.
    url = make_database(
        TABLES
        + """
        CREATE FUNCTION known_item(i int) RETURNS boolean LANGUAGE sql
          AS 'SELECT EXISTS (SELECT 1 FROM items WHERE id = i)';
        CREATE TABLE refs (item_id int CHECK (known_item(item_id)));
        INSERT INTO refs VALUES (1), (2);
        """
    )
    result = run(url, {"verify": True})
    cause = assert_named_failure(
        emu, result, errors.RestoreFailedError, "pg_restore", backed_up=True
    )
    assert "items" in cause["errorMessage"]
    assert_log_linked(emu, result, cause)
    assert any(key.endswith(".verified.json") for key in result.objects)
