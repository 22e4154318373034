"""Verify cleans up after itself, whatever happens, and its verdict always stands.

The scratch role here is what a managed scratch server gives: CREATEDB, not a
superuser. A session it may not end (a superuser's, or an autovacuum worker's)
connected to its scratch database must not crash the verify: DROP DATABASE ...
WITH (FORCE) would fail with "must be a member of the role whose process is
being terminated".
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from pgautodumper import layout, verify
from pgautodumper.connection import ConnectionInfo
from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import BACKUP_PASSWORD
from tests.faults import faulty_proxy

SQL = """
CREATE TABLE items (id int PRIMARY KEY, body text);
INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
"""


@contextmanager
def scratch_role(pg: ThrowawayPostgres) -> Iterator[tuple[str, str]]:
    """A CREATEDB, non-superuser role: (its name, its scratch URL)."""
    role, password = f"pgad_scratch_{secrets.token_hex(4)}", secrets.token_hex(12)
    pg.psql(f"CREATE ROLE {role} LOGIN CREATEDB NOSUPERUSER PASSWORD '{password}'")
    try:
        yield role, pg.url(role, password, "postgres")
    finally:
        for name in scratch_databases(pg, owner=role):
            pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        pg.psql(f"DROP ROLE IF EXISTS {role}")


def scratch_databases(pg: ThrowawayPostgres, *, owner: str | None = None) -> list[str]:
    owned = f" AND pg_get_userbyid(datdba) = '{owner}'" if owner else ""
    return pg.psql(
        f"SELECT datname FROM pg_database WHERE datname LIKE 'pgad_verify_%'{owned} ORDER BY 1"
    ).split()


def wait_until(condition: Callable[[], bool], what: str, *, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.02)


class Squatter(threading.Thread):
    """A superuser session that connects to the role's scratch database as soon as it
    exists, and stays until ``leave_when`` says so (never, by default)."""

    def __init__(self, pg: ThrowawayPostgres, role: str, leave_when: Callable[[], bool]) -> None:
        super().__init__(daemon=True)
        self.pg, self.role, self.leave_when = pg, role, leave_when
        self.connected = threading.Event()
        self.release = threading.Event()
        self.saw_drop_while_connected = False
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_until(lambda: bool(scratch_databases(self.pg, owner=self.role)), "scratch db")
            name = scratch_databases(self.pg, owner=self.role)[0]
            url = self.pg.admin_url.replace("/postgres?", f"/{name}?")
            with psycopg.connect(url, autocommit=True):
                self.connected.set()
                while not self.release.is_set():
                    if self.leave_when():
                        self.saw_drop_while_connected = True
                        return
                    time.sleep(0.02)
        except BaseException as exc:
            self.error = exc
            self.connected.set()


def drop_attempted_by(pg: ThrowawayPostgres, role: str) -> Callable[[], bool]:
    """Whether a session of ``role`` is running, or last ran, a DROP DATABASE."""

    def attempted() -> bool:
        return (
            pg.psql(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = "
                f"'{role}' AND query ILIKE 'DROP DATABASE%'"
            ).strip()
            != "0"
        )

    return attempted


@contextmanager
def restore_held_until(moto_server: str, event: threading.Event) -> Iterator[str]:
    """An S3 endpoint whose dump downloads wait for ``event``: the squatter is
    connected before the restore can even start, whatever the machine's speed."""

    def hold(method: str, path: str) -> bool:
        if method == "GET" and ".dump.zst" in path:
            event.wait(120)
        return False

    with faulty_proxy(moto_server, hold) as proxy:
        yield proxy


@pytest.fixture
def backed_up(cli, make_database, bucket) -> dict:
    result = cli(
        "backup", "--database-url", make_database(SQL), "--bucket", bucket, "--name", "items",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _verdict(s3, bucket: str, dump_key: str) -> dict:
    key = layout.keys_for(dump_key).verified
    return json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_a_session_the_role_may_not_end_does_not_break_the_cleanup(
    cli, pg, bucket, s3, moto_server, backed_up
):
    with scratch_role(pg) as (role, scratch):
        squatter = Squatter(pg, role, leave_when=drop_attempted_by(pg, role))
        squatter.start()
        with restore_held_until(moto_server, squatter.connected) as proxy:
            result = cli(
                "verify", "--bucket", bucket, "--key", backed_up["dump_key"],
                "--scratch-url", scratch,
                env={"AWS_ENDPOINT_URL": proxy},
            )  # fmt: skip
        squatter.release.set()
        squatter.join(timeout=60)
        assert squatter.error is None, squatter.error
        leftovers = scratch_databases(pg, owner=role)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "InsufficientPrivilege" not in result.stderr
    # The DROP met the superuser's session, and still removed the database.
    assert squatter.saw_drop_while_connected
    assert leftovers == []
    assert _verdict(s3, bucket, backed_up["dump_key"])["verdict"] == "passed"


def test_a_cleanup_failure_never_masks_the_verdict_and_the_next_verify_sweeps(
    pg, bucket, s3, moto_server, backed_up, monkeypatch, caplog
):
    keys = layout.keys_for(backed_up["dump_key"])
    monkeypatch.setattr(verify, "DROP_ATTEMPTS", 1)
    with scratch_role(pg) as (role, scratch):
        squatter = Squatter(pg, role, leave_when=lambda: False)  # it never leaves
        squatter.start()
        with restore_held_until(moto_server, squatter.connected) as proxy:
            monkeypatch.setenv("AWS_ENDPOINT_URL", proxy)
            with caplog.at_level(logging.WARNING, logger="pgautodumper.verify"):
                verdict = verify.verify(bucket, keys, ConnectionInfo.from_url(scratch))
            monkeypatch.undo()
        left = scratch_databases(pg, owner=role)
        squatter.release.set()
        squatter.join(timeout=60)
        assert squatter.error is None, squatter.error

        # The verdict stands and is recorded; the failed drop is only a warning.
        assert verdict.passed
        assert _verdict(s3, bucket, backed_up["dump_key"])["verdict"] == "passed"
        assert len(left) == 1
        assert any("could not drop scratch database" in r.message for r in caplog.records)

        # A day later, the next verify's sweep drops it (the time is in its name).
        info = ConnectionInfo.from_url(scratch)
        assert verify.drop_leftovers(info) == []  # still young
        later = datetime.now(UTC) + timedelta(days=1, minutes=1)
        assert verify.drop_leftovers(info, now=later) == left
        assert scratch_databases(pg, owner=role) == []


def test_verify_drops_only_leftovers_older_than_a_day(cli, pg, bucket, backed_up):
    old = "pgad_verify_20200101000000_oldrun_deadbeef"
    young = f"pgad_verify_{datetime.now(UTC):%Y%m%d%H%M%S}_youngrun_cafebabe"
    legacy = "pgad_verify_legacy_run_without_time"  # an older release's name
    for name in (old, young, legacy):
        pg.psql(f'CREATE DATABASE "{name}"')
    try:
        result = cli(
            "verify", "--bucket", bucket, "--key", backed_up["dump_key"],
            "--scratch-url", pg.url("pgad_backup", BACKUP_PASSWORD, "postgres"),
        )  # fmt: skip
        remaining = scratch_databases(pg)
    finally:
        for name in (old, young, legacy):
            pg.psql(f'DROP DATABASE IF EXISTS "{name}"')

    assert result.returncode == 0, result.stderr
    assert old not in remaining
    # A legacy name is dated from its files (a superuser may read them): created just now.
    assert young in remaining and legacy in remaining


def test_a_restore_failure_is_recorded_as_a_verdict_and_cleaned_up(
    cli, pg, make_database, bucket, s3
):
    """dblink is not a trusted extension: the non-superuser scratch role cannot create it."""
    source = make_database("CREATE EXTENSION dblink; " + SQL)
    backup = cli("backup", "--database-url", source, "--bucket", bucket, "--json")
    assert backup.returncode == 0, backup.stderr
    dump_key = json.loads(backup.stdout)["dump_key"]
    with scratch_role(pg) as (role, scratch):
        result = cli("verify", "--bucket", bucket, "--key", dump_key, "--scratch-url", scratch)
        leftovers = scratch_databases(pg, owner=role)

    assert result.returncode == 19, result.stderr  # named from pg_restore's failure
    assert "may not create extension 'dblink'" in result.stderr
    verdict = _verdict(s3, bucket, dump_key)
    assert verdict["verdict"] == "failed"
    assert verdict["reason"].startswith("MissingExtensionsError: ")
    assert "pg_restore exited with code 1" in verdict["reason"]
    assert verdict["sha256_ok"] is True  # the bytes were intact: the failure is pg_restore's
    assert leftovers == []


def test_scratch_names_carry_their_creation_time():
    keys = layout.keys_for("n/2026/01/02/20260102T030405Z-Exec.Id-42.dump.zst")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    name = verify.scratch_name(keys, now=now)
    assert name.startswith("pgad_verify_20260102030405_") and len(name) <= 63
    assert name == name.lower() and all(c.isalnum() or c == "_" for c in name)
    assert verify.created_at(name) == now
    assert verify.created_at("pgad_verify_legacy_run") is None


def test_a_scratch_role_without_createdb_is_named_once(cli, pg, bucket, backed_up):
    role, password = f"pgad_nocreate_{secrets.token_hex(4)}", secrets.token_hex(12)
    pg.psql(f"CREATE ROLE {role} LOGIN NOCREATEDB PASSWORD '{password}'")
    try:
        result = cli("verify", "--bucket", bucket, "--key", backed_up["dump_key"],
                     "--scratch-url", pg.url(role, password, "postgres"))  # fmt: skip
    finally:
        pg.psql(f"DROP ROLE {role}")
    assert result.returncode == 13, result.stderr  # a missing privilege, not a bad password
    assert "permission denied to create database" in result.stderr
    assert "needs CREATEDB" in result.stderr
    assert result.stderr.count("pgautodumper:") == 1, result.stderr  # no sweep warning first
