"""Backups from a hot standby, as many run them to spare the primary.

A primary of the test's own and a streaming standby of it (pg_basebackup -R).
An unlogged table has no data on a standby: the backup holds it empty, as
pg_dump's would, says so, and verifies.
The standby cancels, at once, any query whose snapshot still needs rows that the
primary vacuumed away (max_standby_streaming_delay = 0, no hot_standby_feedback):
a dump then fails with the cause and the settings that prevent it named, and
stores nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from pgautodumper.connection import ConnectionInfo
from pgautodumper.scratch import SUPERUSER, ThrowawayPostgres, free_port
from pgautodumper.snapshot import conflicted_since, recovery_conflicts
from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE
from tests.faults import faulty_proxy
from tests.pgcompare import fingerprint

# A server of its own: alongside the rest (tests/background.py).
pytestmark = pytest.mark.background

DATABASE = "orders"
SQL = """
CREATE TABLE big (id int PRIMARY KEY, v text) WITH (autovacuum_enabled = off);
INSERT INTO big SELECT g, md5(g::text) || md5((g * 7)::text) FROM generate_series(1, 300000) g;
CREATE TABLE small (id int) WITH (autovacuum_enabled = off);
INSERT INTO small SELECT generate_series(1, 1000);
CREATE SEQUENCE counter;
SELECT setval('counter', 42);
CREATE UNLOGGED TABLE sessions (id int PRIMARY KEY, token text);
INSERT INTO sessions SELECT g, md5(g::text) FROM generate_series(1, 40000) g;
"""
UNLOGGED = "table public.sessions"
STREAMED = 1024 * 1024


def _as_server_user(server: ThrowawayPostgres, tool: str, *args: str) -> None:
    argv = [str(server.bin_dir / tool), *args]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", SUPERUSER, "--", *argv]
    subprocess.run(argv, check=True, capture_output=True, cwd=server.root, timeout=120)


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[str, str]]:
    """(primary URL, standby URL) of the same database."""
    with ThrowawayPostgres() as primary:
        primary.psql(f"CREATE ROLE {BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{BACKUP_PASSWORD}'")
        primary.psql(f"CREATE DATABASE {DATABASE}")
        primary.psql(SQL, dbname=DATABASE)
        data, sockets, port = primary.root / "standby", primary.root / "standby-run", free_port()
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(sockets, SUPERUSER)
        # A fast checkpoint: the default spreads it over minutes.
        _as_server_user(primary, "pg_basebackup", "-h", str(primary.socket_dir),
                        "-p", str(primary.port), "-U", SUPERUSER, "-D", str(data), "-R",
                        "--checkpoint=fast", "-X", "stream")  # fmt: skip
        options = (f"-p {port} -k {sockets} -c listen_addresses=127.0.0.1 -c hot_standby=on "
                   "-c max_standby_streaming_delay=0 -c hot_standby_feedback=off")  # fmt: skip
        _as_server_user(primary, "pg_ctl", "-D", str(data), "-o", options,
                        "-l", str(primary.root / "standby.log"), "-w", "start")  # fmt: skip
        try:
            url = primary.url(BACKUP_ROLE, BACKUP_PASSWORD, DATABASE)
            yield url, url.replace(f":{primary.port}/", f":{port}/")
        finally:
            _as_server_user(primary, "pg_ctl", "-D", str(data), "-m", "immediate", "stop")


def _backup(cli, url: str, bucket: str, *extra: str, env: dict[str, str] | None = None):
    return cli("backup", "--database-url", url, "--bucket", bucket, "--name", DATABASE,
               "--stream-threshold-bytes", str(STREAMED), "--jobs", "2", "--json", *extra,
               env=env)  # fmt: skip


def test_a_backup_of_the_standby_restores_equal_to_the_primary(cli, servers, bucket):
    primary, standby = servers
    with psycopg.connect(standby) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    result = _backup(cli, standby, bucket)
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)
    assert {part["table"] for part in manifest["parts"]} == {"big"}
    assert {t["table"]: t["rows"] for t in manifest["tables"]}["sessions"] == 0
    assert "unlogged table(s) public.sessions have no data there" in result.stderr

    # The standby itself is no target: refused by name, before anything starts.
    refused = cli("restore", "--bucket", bucket, "--key", manifest["manifest_key"],
                  "--database-url", standby.rsplit("/", 1)[0] + "/postgres")  # fmt: skip
    assert refused.returncode == 28, refused.stderr
    assert "is a hot standby" in refused.stderr and "Traceback" not in refused.stderr

    target = primary.rsplit("/", 1)[0] + "/restored"
    with psycopg.connect(primary, autocommit=True) as admin:
        admin.execute("CREATE DATABASE restored TEMPLATE template0")
    restored = cli("restore", "--bucket", bucket, "--key", manifest["manifest_key"],
                   "--database-url", target)  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    source, copy = fingerprint(primary), fingerprint(target)
    assert copy.pop(UNLOGGED) != source.pop(UNLOGGED)  # there, but empty
    assert copy == source
    with psycopg.connect(target) as conn:
        assert conn.execute("SELECT count(*) FROM sessions").fetchone() == (0,)

    scratch = primary.rsplit("/", 1)[0] + "/postgres"
    verified = cli("verify", "--bucket", bucket, "--key", manifest["manifest_key"],
                   "--scratch-url", scratch)  # fmt: skip
    assert verified.returncode == 0, verified.stderr


def _dump_holds_its_locks(standby: str) -> bool:
    with psycopg.connect(standby, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.granted AND l.relation = 'big'::regclass"
            " AND a.application_name LIKE 'pgautodumper%'"
        ).fetchone()
    return bool(row and row[0])


def test_a_recovery_conflict_names_the_replica_settings_and_stores_nothing(
    cli, servers, bucket, s3, moto_server
):
    primary, standby = servers
    outcome: list[subprocess.CompletedProcess[str]] = []
    # Each uploaded part waits 2 s: the dump is still reading when the primary vacuums.
    with faulty_proxy(moto_server, part_delay=2.0) as proxy:
        env = {"AWS_ENDPOINT_URL": proxy}
        run = threading.Thread(
            target=lambda: outcome.append(
                _backup(cli, standby, bucket, "--part-size", str(5 * 1024 * 1024), env=env)
            )
        )
        run.start()
        deadline = time.monotonic() + 60
        while not _dump_holds_its_locks(standby):
            assert run.is_alive() and time.monotonic() < deadline, outcome
            time.sleep(0.1)
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("DELETE FROM big WHERE id % 2 = 0")
            conn.execute("VACUUM big")
        run.join(timeout=300)
    (result,) = outcome
    assert result.returncode == 21, result.stderr
    assert "conflict with recovery" in result.stderr
    assert "hot_standby_feedback = on" in result.stderr and "Traceback" not in result.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0


def test_a_session_the_replica_ends_is_counted_whatever_its_client_saw(servers):
    """A session idle in its transaction is ended, not cancelled: its client may see only
    "server closed the connection". The backup then asks the replica's own count."""
    primary, standby = servers
    info = ConnectionInfo.from_url(standby)
    with psycopg.connect(standby) as conn:
        before = recovery_conflicts(conn)
    assert not conflicted_since(info, before)
    with psycopg.connect(standby) as victim:
        victim.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        victim.execute("SELECT count(*) FROM big")  # its snapshot, held, sees every row
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("DELETE FROM big WHERE id % 3 = 0")
            conn.execute("VACUUM big")
        deadline = time.monotonic() + 60
        while not conflicted_since(info, before):
            assert time.monotonic() < deadline, "the replica never ended the session"
            time.sleep(0.2)
        with pytest.raises(psycopg.OperationalError):
            victim.execute("SELECT 1")
