"""A server that goes away mid-restore (or ends a backup's session) is named for what
happened to it.

A restart, a crash of one of its processes (the out-of-memory killer), an
administrator's pg_terminate_backend and a network reset all reach a session
that is sending as the same symptom ("server closed the connection
unexpectedly"). The restore asks the server again and names the cause; each
says the target is incomplete. A backup's sessions read the server's last
words, but a restart or a failover is found the same way. (A backup's link
reset is in test_settings.py.)

Every row of the restored table passes a domain check that sleeps while the
target database sets ``pgad.slow``: the restore's COPY is running, however fast
the machine, when the fault is injected.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pgautodumper.connection import ConnectionInfo, connect
from pgautodumper.errors import DatabaseError, DatabaseUnreachableError, TaskOutOfMemoryError
from pgautodumper.scratch import ThrowawayPostgres
from pgautodumper.server_gone import ServerLife, server_life, went_away
from pgautodumper.verify import scratch_run
from tests.conftest import BACKUP_PASSWORD, INCOMPRESSIBLE, PART, create_database, start_cli
from tests.faults import breaking_link, faulty_proxy
from tests.integration.format2 import backup, create_bucket

pytestmark = pytest.mark.background

SLOW_ROWS = """
CREATE FUNCTION public.slow_ok(value int) RETURNS boolean LANGUAGE sql AS $$
  SELECT CASE WHEN pg_catalog.current_setting('pgad.slow', true) = 'on'
              THEN pg_catalog.pg_sleep(0.002) IS NOT NULL ELSE true END
$$;
CREATE DOMAIN public.checked_int AS int CHECK (public.slow_ok(VALUE));
CREATE TABLE public.rows (id public.checked_int, pad text);
INSERT INTO public.rows SELECT g, repeat('x', 500) FROM generate_series(1, 3000) g;
"""

INCOMPLETE = "restore again into an empty database, or with --clean"


def _copy_pid(server: ThrowawayPostgres, dbname: str, *, where: str) -> int:
    """The pid of a COPY in ``dbname`` (as ``where`` picks it), once one runs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        pids = server.psql(
            f"SELECT pid FROM pg_stat_activity WHERE datname = '{dbname}' AND {where}"
        ).split()
        if pids:
            return int(pids[0])
        time.sleep(0.05)
    pytest.fail(f"no COPY ran in {dbname}")


def _loading_pid(server: ThrowawayPostgres, dbname: str) -> int:
    """A COPY of the restore into ``dbname``, while it loads rows (each sleeps)."""
    return _copy_pid(
        server, dbname, where="query ILIKE 'COPY %FROM stdin%' AND wait_event = 'PgSleep'"
    )


def _ready(server: ThrowawayPostgres) -> None:
    """Wait for the server to accept sessions again (after a crash's recovery)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            server.psql("SELECT 1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _crash(server: ThrowawayPostgres, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)  # as the out-of-memory killer does: the server recovers


def _terminate(server: ThrowawayPostgres, pid: int) -> None:
    server.psql(f"SELECT pg_terminate_backend({pid})")


def _restart(server: ThrowawayPostgres, pid: int) -> None:
    server.restart()


FAULTS: dict[str, tuple[Callable[[ThrowawayPostgres, int], None], int, str]] = {
    "restart": (_restart, 11, r"(restarted or failed over|went away) during the restore into"),
    "crash": (_crash, 11, r"crashed during the restore into .* out-of-memory killer"),
    "terminate": (_terminate, 10, r"ended by an administrator \(pg_terminate_backend"),
}


@pytest.fixture(scope="module")
def slow_backups(own_server, moto_server) -> str:
    """A bucket with a backup of each format (named after it), whose rows load slowly
    where ``pgad.slow`` is on."""
    bucket = create_bucket()
    source = create_database(own_server, SLOW_ROWS)
    for backup_format in ("2", "1"):
        manifest = backup(source, bucket, backup_format, "--format", backup_format)
        SLOW_RUNS[backup_format] = manifest["run_id"]
    return bucket


SLOW_RUNS: dict[str, str] = {}  # each slow backup's run id, which its scratch names


def _restore(bucket: str, backup_format: str, url: str) -> subprocess.Popen[str]:
    return start_cli(
        "restore", "--bucket", bucket, "--latest", "--name", backup_format, "--database-url", url
    )


def _slow_target(server: ThrowawayPostgres) -> tuple[str, str]:
    url = create_database(server)
    dbname = url.rsplit("/", 1)[1]
    server.psql(f"ALTER DATABASE {dbname} SET pgad.slow = 'on'")
    return dbname, url


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_target_going_away_mid_restore_is_named(own_server, slow_backups, fault, backup_format):
    act, exit_code, said = FAULTS[fault]
    dbname, url = _slow_target(own_server)
    process = _restore(slow_backups, backup_format, url)
    try:
        act(own_server, _loading_pid(own_server, dbname))
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()
        _ready(own_server)

    assert process.returncode == exit_code, stderr
    assert re.search(said, stderr), stderr
    assert INCOMPLETE in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_link_reset_mid_restore_is_named(own_server, slow_backups, backup_format):
    """The network drops a loading session (a reset: the server stays up, said nothing)."""
    _, url = _slow_target(own_server)
    with breaking_link(own_server.port, after_bytes=256 * 1024, to_server=True) as port:
        process = _restore(
            slow_backups, backup_format, url.replace(f":{own_server.port}/", f":{port}/")
        )
        _, stderr = process.communicate(timeout=300)

    assert process.returncode == 11, stderr
    assert "broke during the restore into" in stderr and "network interruption" in stderr
    assert INCOMPLETE in stderr and "Traceback" not in stderr
    assert BACKUP_PASSWORD not in stderr


BACKUP_FAULTS: dict[str, tuple[Callable[[ThrowawayPostgres, int], None], int, str]] = {
    # Retried by the task: the server may be back in seconds (a Multi-AZ failover).
    "restart": (_restart, 11, "during the backup of"),
    # Not retried: someone meant it (a watchdog that ends long sessions, say).
    "terminate": (_terminate, 10, "ended by an administrator (pg_terminate_backend"),
    "crash": (_crash, 11, "the server crashed during the backup of"),
}


@pytest.fixture(scope="module")
def incompressible_source(own_server) -> str:
    return create_database(own_server, INCOMPRESSIBLE)


@pytest.mark.parametrize("fault", list(BACKUP_FAULTS))
@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_backup_whose_server_goes_away_is_named_and_stores_nothing(
    own_server, incompressible_source, moto_server, s3, fault, backup_format
):
    act, exit_code, said = BACKUP_FAULTS[fault]
    bucket = create_bucket()
    source = incompressible_source
    dbname = source.rsplit("/", 1)[1]
    # Uploads slowed down, and a COPY of 16 MiB or more in 5 MiB parts, one in flight: the
    # COPY waits on the uploads, and is still running when acted on.
    with faulty_proxy(moto_server, part_delay=1.0) as proxy:
        process = start_cli(
            "backup", "--database-url", source, "--bucket", bucket, "--name", fault,
            "--part-size", str(PART), "--format", backup_format,
            "--stream-threshold-bytes", str(16 * 1024 * 1024), env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip
        try:
            act(
                own_server,
                _copy_pid(own_server, dbname, where="state = 'active' AND query ILIKE 'COPY %'"),
            )
            _, stderr = process.communicate(timeout=300)
        finally:
            process.kill()
            _ready(own_server)

    assert process.returncode == exit_code, stderr
    assert said in stderr and "run the backup again" in stderr, stderr
    assert "nothing was stored" in stderr and "Traceback" not in stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _scratch_backend(database_part: str) -> int:
    """The pid of a backend of a scratch server (one a verify started itself) running a
    COPY into a database whose name holds ``database_part``, once one runs."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            with contextlib.suppress(OSError):
                title = cmdline.read_bytes().decode(errors="replace")
                if title.startswith("postgres: ") and database_part in title and "COPY" in title:
                    return int(cmdline.parent.name)
        time.sleep(0.05)
    pytest.fail(f"no scratch backend loaded rows into a database named *{database_part}*")


def test_a_verify_whose_scratch_server_loses_a_process_to_sigkill_says_raise_memory(
    slow_backups,
):
    """On Fargate the out-of-memory killer takes a scratch backend: the verify's own
    server logs the SIGKILL, and the error says what to change (not retried)."""
    process = start_cli(
        "verify", "--bucket", slow_backups, "--latest", "--name", "2", "--scratch-local",
        env={"PGOPTIONS": "-c pgad.slow=on"},
    )  # fmt: skip
    try:
        os.kill(_scratch_backend(f"_{scratch_run(SLOW_RUNS['2'])}_"), signal.SIGKILL)
        _, stderr = process.communicate(timeout=300)
    finally:
        process.kill()

    assert process.returncode == TaskOutOfMemoryError.exit_code, stderr
    assert "terminated by signal 9" in stderr and "raise task.memory" in stderr, stderr
    assert "Traceback" not in stderr


CLOSED = "server closed the connection unexpectedly"


@pytest.mark.parametrize(
    ("changed", "error", "said"),
    [
        ({}, DatabaseUnreachableError, "broke during the work, and the server stayed up"),
        ({"started_at": "2000-01-01T00:00:00+00:00"}, DatabaseUnreachableError,
         "restarted or failed over during the work"),
        ({"stats_reset": "2000-01-01T00:00:00+00:00"}, DatabaseUnreachableError,
         "the server crashed during the work"),
        ({"sessions_killed": -1}, DatabaseError, "ended by an administrator"),
    ],
    ids=["link", "restart", "crash-recovered", "terminated"],
)  # fmt: skip
def test_what_changed_on_the_server_names_a_closed_connection(make_database, changed, error, said):
    """A session that only saw its connection close: the server, asked again, tells why
    by what changed since the work began (start time, statistics reset, sessions ended)."""
    info = ConnectionInfo.from_url(make_database())
    with connect(info) as conn:
        now = server_life(conn)
    before = ServerLife.model_validate({**now.model_dump(), **changed})

    named = went_away(info, [Exception(CLOSED)], before=before, during="the work", hint="h")

    assert type(named) is error and said in named.message and CLOSED in named.message


def test_a_failure_that_did_not_lose_its_session_is_not_named_gone(make_database):
    info = ConnectionInfo.from_url(make_database())
    with connect(info) as conn:
        before = server_life(conn).model_copy(update={"stats_reset": None})

    assert went_away(info, [Exception("permission denied for table t")], before=before,
                     during="the work", hint="h") is None  # fmt: skip
