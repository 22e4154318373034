"""Shared fixtures: a real PostgreSQL server and a moto server over HTTP.

CI starts both before pytest and names them in ``PGAUTODUMPER_TEST_PG``
(``ROOT:PORT``) and ``PGAUTODUMPER_TEST_MOTO`` (an endpoint URL); without them
the session starts its own.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from pgautodumper import aws
from pgautodumper.local.moto_server import MotoServer
from pgautodumper.scratch import ThrowawayPostgres
from pgautodumper.verify import SCRATCH_PREFIX, scratch_run
from tests import background

REPO = Path(__file__).resolve().parent.parent
BACKUP_ROLE = "pgad_backup"
# Random per session (a background child takes its parent's): tests scan every output for it.
PASSWORD_ENV = "PGAUTODUMPER_TEST_PASSWORD"
BACKUP_PASSWORD = os.environ.get(PASSWORD_ENV) or f"pw-{secrets.token_hex(12)}"


@pytest.fixture(scope="session")
def pg() -> Iterator[ThrowawayPostgres]:
    attached = os.environ.get("PGAUTODUMPER_TEST_PG")
    if attached:
        root, port = attached.rsplit(":", 1)
        server = ThrowawayPostgres.attach(Path(root), int(port))
    else:
        server = ThrowawayPostgres().start()
    if not background.in_child():  # the parent made the role, and still uses it
        server.psql(
            f"DROP ROLE IF EXISTS {BACKUP_ROLE}; "
            f"CREATE ROLE {BACKUP_ROLE} LOGIN SUPERUSER PASSWORD '{BACKUP_PASSWORD}'"
        )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    endpoint = os.environ.get("PGAUTODUMPER_TEST_MOTO")
    if endpoint:
        yield endpoint
        return
    with MotoServer() as server:
        yield server.endpoint


@pytest.fixture(scope="session", autouse=True)
def aws_environment(moto_server: str) -> Iterator[None]:
    """Point every AWS client (ours, boto3's, the CLI subprocesses') at moto."""
    values = {
        "AWS_ENDPOINT_URL": moto_server,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(var, None)
    aws.reset()
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the ``background`` tests, for children to run (tests/background.py); all of
    them run here when nothing else was selected."""
    if background.in_child():
        return
    chosen = [i for i in items if i.get_closest_marker(background.MARKER)]
    if not chosen or len(chosen) == len(items):
        return
    for item in chosen:
        background.PENDING.setdefault(background.child_of(item), []).append(item.nodeid)
    items[:] = [i for i in items if not i.get_closest_marker(background.MARKER)]
    config.hook.pytest_deselected(items=chosen)


@pytest.fixture(scope="session", autouse=True)
def background_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Start the children once the server and its backup role exist; wait for them last."""
    if not background.PENDING:
        yield
        return
    pg: ThrowawayPostgres = request.getfixturevalue("pg")
    env = {
        "PGAUTODUMPER_TEST_PG": f"{pg.root}:{pg.port}",
        "PGAUTODUMPER_TEST_MOTO": request.getfixturevalue("moto_server"),
        PASSWORD_ENV: BACKUP_PASSWORD,
    }
    for module, nodeids in background.PENDING.items():
        background.CHILDREN.append(background.Child.start(module, nodeids, REPO, env))
    yield
    for child in background.CHILDREN:
        child.finish()


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    if any(child.failures for child in background.CHILDREN):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter) -> None:
    if not background.CHILDREN:
        return
    terminalreporter.section("background tests (run alongside, in child pytests)")
    for child in background.CHILDREN:
        terminalreporter.write_line(child.summary())
        for failure in child.failures:
            terminalreporter.write_line(f"FAILED {child.module}::{failure}")


@pytest.fixture
def s3():
    return boto3.client("s3")


@pytest.fixture
def bucket(s3) -> str:
    name = f"pgad-test-{secrets.token_hex(6)}"
    s3.create_bucket(Bucket=name)
    return name


# About 20 MiB of random bytes (bytea): four 5 MiB parts even after zstd.
INCOMPRESSIBLE = """
CREATE TABLE blobs AS
SELECT g AS id, decode(string_agg(md5(random()::text || g || i), '' ORDER BY i), 'hex') AS payload
  FROM generate_series(1, 20480) g, generate_series(1, 64) i
 GROUP BY g;
"""
PART = 5 * 1024 * 1024


# An event trigger that refuses every schema change, as a change-freeze guard would:
# a restore into that database fails where no check foresees it and no cause names it.
FROZEN_SCHEMA_SQL = (
    "CREATE FUNCTION frozen_schema() RETURNS event_trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'schema changes are frozen'; END $$;"
    "CREATE EVENT TRIGGER frozen_schema ON ddl_command_start EXECUTE FUNCTION frozen_schema();"
)


def create_database(server: ThrowawayPostgres, sql: str = "", *, name: str | None = None) -> str:
    """A fresh database on ``server``, optionally filled by SQL; its TCP URL for the backup
    role (which the server must have)."""
    dbname = name or f"db_{secrets.token_hex(5)}"
    server.psql(f'CREATE DATABASE "{dbname}" TEMPLATE template0')
    if sql:
        server.psql(sql, dbname=dbname)
    return server.url(BACKUP_ROLE, BACKUP_PASSWORD, dbname)


def verify_leftovers(server: ThrowawayPostgres, manifest: dict) -> list[str]:
    """The scratch databases a verify of ``manifest``'s backup left on ``server`` (named
    after its run id: other tests' verifies may be running on the same server)."""
    run = scratch_run(manifest["run_id"])
    names = server.psql(f"SELECT datname FROM pg_database WHERE datname LIKE '{SCRATCH_PREFIX}%'")
    return [name for name in names.split() if f"_{run}_" in name]


@pytest.fixture
def make_database(pg: ThrowawayPostgres):
    """Create a fresh database, optionally filled by SQL; returns its TCP URL."""

    def make(sql: str = "", *, name: str | None = None) -> str:
        return create_database(pg, sql, name=name)

    return make


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start the real ``pgautodumper`` CLI in a child process, to act while it runs."""
    return subprocess.Popen(
        [sys.executable, "-m", "pgautodumper", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: int = 300):
    """Run the real ``pgautodumper`` CLI in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pgautodumper", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def cli():
    return run_cli
