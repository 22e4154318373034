"""Invariant 8: the source's settings never break a backup, a restore or a verify.

Each setting is set at DATABASE level on the source and on the restore target,
and at ROLE level on the verify's (non-superuser) scratch role; the backup,
restore and verify run through the real CLI and the restored data must equal
the source's, compared under canonical settings (so a float that lost digits,
or a timestamp read in another style, shows).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import quote

import psycopg
import pytest

from pgautodumper.connection import pgoptions, restore_settings, session_settings
from pgautodumper.scratch import ThrowawayPostgres
from tests.conftest import (
    BACKUP_PASSWORD,
    INCOMPRESSIBLE,
    PART,
    create_database,
    start_cli,
    verify_leftovers,
)
from tests.faults import breaking_link, faulty_proxy
from tests.integration.conftest import tools_of
from tests.pgcompare import fingerprint

# One workflow per setting, each waiting on its own tools and proxies: alongside the rest
# (tests/background.py).
pytestmark = pytest.mark.background

DATA = """
CREATE TABLE measures (
    id int PRIMARY KEY, f8 double precision, f4 real, at timestamptz, local_at timestamp,
    day date, span interval, exact numeric
);
INSERT INTO measures
SELECT g, g * pi() / 7, (g / 3.0)::real,
       timestamptz '2024-03-10 01:30:00+00' + g * interval '37 minutes 13.123456 seconds',
       timestamp '1999-12-31 23:59:59.999' + g * interval '1 day 1 hour',
       date '2000-02-28' + g,
       make_interval(years => g % 3, months => g % 13, days => g % 40, hours => g % 30,
                     secs => g * 1.5),
       g / 7.0
  FROM generate_series(1, 2000) g;
INSERT INTO measures VALUES
    (0, 'NaN', '-Infinity', 'infinity', '-infinity', 'infinity',
     '-1 year -2 days +03:04:05.678', 'NaN'),
    (-1, 1e-300, 3.4e38, '0044-03-15 12:00:00+00 BC', '1900-01-01', '0001-01-01 BC',
     '178000000 years', 1e-20);
CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL, note text, tags text[]);
INSERT INTO events (at, note, tags)
SELECT timestamptz '2020-01-01 00:00:00+00' - g * interval '1 hour 1 second', 'event ' || g,
       ARRAY['t' || g, NULL]
  FROM generate_series(1, 500) g;
CREATE VIEW recent AS SELECT * FROM events WHERE at > '2019-12-01';
"""
ROWS = {"public.measures": 2002, "public.events": 500}

# A schema that shadows pg_catalog functions for every session whose
# search_path puts it first: counts and names read there would be lies.
SHADOW = """
CREATE SCHEMA shadow;
CREATE FUNCTION shadow.bump(bigint) RETURNS bigint LANGUAGE sql IMMUTABLE
    AS 'SELECT $1 + 1000';
CREATE AGGREGATE shadow.count(*) (SFUNC = shadow.bump, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION shadow.current_database() RETURNS name LANGUAGE sql AS $$ SELECT 'evil'::name $$;
CREATE FUNCTION shadow.pg_database_size(name) RETURNS bigint LANGUAGE sql AS 'SELECT -1::bigint';
"""


# Streamed by COPY (at a 1 MiB threshold) and loaded by our own sessions, not
# pg_restore's: XML fragments (content, not documents), timestamps, floats.
STREAMED = """
CREATE TABLE docs AS
SELECT g AS id, ('<p>' || g || '</p><q/>')::xml AS body,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '61 seconds' AS at,
       g / 3.0::float8 AS f, ARRAY['w' || g, NULL] AS words, repeat('d', 40) AS pad
  FROM generate_series(1, 40000) g;
"""

# Text LATIN1 cannot hold, in a small table (pg_dump writes it) and in one streamed in
# parts (at a 1 MiB threshold): a LATIN1 client_encoding must not reach either stream.
UNICODE = """
CREATE TABLE names AS SELECT g AS id, 'Zoë 日本 ' || g AS name FROM generate_series(1, 50) g;
CREATE TABLE words AS
SELECT g AS id, '汉字 ünï ' || g AS word, repeat('ж', 20) AS pad FROM generate_series(1, 40000) g;
"""

# A table whose count(*) outlasts a 100 ms statement_timeout (grown until it does).
BIG = "CREATE TABLE big AS SELECT g AS id FROM generate_series(1, 1000000) g;"

# Canonical settings for comparing contents (startup options override database settings).
CANONICAL = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "extra_float_digits": "3",
    "TimeZone": "UTC",
    "search_path": "pg_catalog",
    "statement_timeout": "0",
    "lock_timeout": "0",
    "idle_in_transaction_session_timeout": "0",
    "idle_session_timeout": "0",
    "client_encoding": "UTF8",
}


@dataclass(frozen=True)
class Case:
    name: str
    value: str
    needs: int = 0  # minimum server_version_num
    extra_sql: str = ""
    lock_wait: bool = False  # a statement of ours must wait on a lock longer than the timeout
    big_count: bool = False  # a row count of ours must take longer than the timeout
    slow_upload: bool = False  # the snapshot's connection must sit idle longer than the timeout
    streamed: bool = False  # extra_sql's table streams in parts: our loaders must cope
    idle: bool = False  # the restore's lock watch must sit idle between looks past the timeout


CASES = [
    Case("statement_timeout", "'100ms'", extra_sql=BIG, big_count=True),
    Case("lock_timeout", "'100ms'", lock_wait=True),
    Case("idle_in_transaction_session_timeout", "'1s'", extra_sql=INCOMPRESSIBLE,
         slow_upload=True),
    Case("transaction_timeout", "'1s'", needs=170000, extra_sql=INCOMPRESSIBLE,
         slow_upload=True),
    Case("idle_session_timeout", "'100ms'", needs=140000, extra_sql=STREAMED, streamed=True,
         idle=True),
    Case("DateStyle", "'SQL, DMY'"),
    Case("DateStyle", "'German'", extra_sql=STREAMED, streamed=True),
    Case("IntervalStyle", "'sql_standard'"),
    Case("IntervalStyle", "'iso_8601'"),
    Case("TimeZone", "'Pacific/Chatham'"),
    Case("search_path", "'shadow, pg_catalog, public'", extra_sql=SHADOW),
    Case("extra_float_digits", "-15", extra_sql=STREAMED, streamed=True),
    Case("xmloption", "document", extra_sql=STREAMED, streamed=True),
    Case("array_nulls", "off", extra_sql=STREAMED, streamed=True),
    Case("default_transaction_isolation", "'serializable'"),
    Case("default_transaction_read_only", "on"),
    Case("client_encoding", "'LATIN1'", extra_sql=UNICODE, streamed=True),
]  # fmt: skip


def _id(case: Case) -> str:
    return f"{case.name}={case.value.strip(chr(39))}"


def canonical(url: str) -> str:
    options = " ".join(f"-c {name}={value}" for name, value in CANONICAL.items())
    return f"{url}?options={quote(options)}"


def server_version_num(pg: ThrowawayPostgres) -> int:
    return int(pg.psql("SHOW server_version_num").strip())


@contextmanager
def scratch_role(pg: ThrowawayPostgres, setting: str, value: str) -> Iterator[str]:
    """A CREATEDB (not superuser) role with the setting at ROLE level; its scratch URL."""
    role, password = f"pgad_scratch_{secrets.token_hex(4)}", secrets.token_hex(12)
    pg.psql(f"CREATE ROLE {role} LOGIN CREATEDB PASSWORD '{password}'")
    pg.psql(f"ALTER ROLE {role} SET {setting} = {value}")
    try:
        yield pg.url(role, password, "postgres")
    finally:
        pg.psql(f"DROP ROLE IF EXISTS {role}")


def _leader_waits_on(conn: psycopg.Connection, table: str) -> bool:
    """Whether a pgautodumper session waits for a lock on ``table`` right now."""
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE NOT l.granted AND l.relation = %s::regclass"
        " AND a.application_name = 'pgautodumper'",
        (table,),
    ).fetchone()
    return bool(row and row[0])


def _grow_until_a_count_outlasts_the_timeout(source: str) -> int:
    """Double ``big`` until counting it under the database's own statement_timeout is
    canceled: that proves the count takes longer, on this machine. Its row count."""
    with psycopg.connect(canonical(source), autocommit=True) as admin:
        for _ in range(7):
            with psycopg.connect(source, autocommit=True) as own:
                try:
                    own.execute("SELECT count(*) FROM public.big")
                except psycopg.errors.QueryCanceled:
                    row = admin.execute("SELECT count(*) FROM public.big").fetchone()
                    assert row is not None
                    return row[0]
            admin.execute(
                "INSERT INTO public.big"
                " SELECT id + (SELECT max(id) FROM public.big) FROM public.big"
            )
    pytest.fail("counting 128 million rows never outlasted statement_timeout")


def _backup_waiting_on_a_lock(source: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run the backup while a migration holds ACCESS EXCLUSIVE on a table, and release
    it only after our connection has waited far longer than the 100 ms timeouts."""
    with (
        psycopg.connect(canonical(source)) as holder,
        psycopg.connect(canonical(source), autocommit=True) as watcher,
    ):
        holder.execute("LOCK TABLE public.measures IN ACCESS EXCLUSIVE MODE")
        process = start_cli(*args)
        try:
            deadline = time.monotonic() + 60
            while not _leader_waits_on(watcher, "public.measures"):
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, "the backup never waited for the lock"
                time.sleep(0.05)
            # Ten times the timeout, then check it is still waiting: the timeout did not fire.
            time.sleep(1.0)
            assert _leader_waits_on(watcher, "public.measures")
        finally:
            holder.rollback()
        stdout, stderr = process.communicate(timeout=300)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_a_database_setting_breaks_nothing(case: Case, cli, pg, bucket, s3, moto_server, request):
    # A setting newer than the test server's major is tried on PostgreSQL 18 (and its tools).
    server, tools = pg, {}
    if server_version_num(pg) < case.needs:
        server = request.getfixturevalue("pg18")
        tools = tools_of(server)
    source = create_database(server, DATA + case.extra_sql)
    target = create_database(server)
    for url in (source, target):
        dbname = url.rsplit("/", 1)[1]
        server.psql(f'ALTER DATABASE "{dbname}" SET {case.name} = {case.value}')
    # The setting is live for the source's own sessions, not elsewhere.
    shown = {}
    for url in (source, source.rsplit("/", 1)[0] + "/postgres"):
        with psycopg.connect(url) as probe:
            shown[url] = probe.execute("SELECT current_setting(%s)", (case.name,)).fetchone()
    assert len(set(shown.values())) == 2, shown
    expected_rows = dict(ROWS)
    if case.big_count:
        expected_rows["public.big"] = _grow_until_a_count_outlasts_the_timeout(source)

    args = ["backup", "--database-url", source, "--bucket", bucket, "--name", "settings",
            "--json", "--lock-wait-timeout", "120"]  # fmt: skip
    if case.streamed:
        args += ["--stream-threshold-bytes", str(1024 * 1024)]
    if case.lock_wait:
        backup = _backup_waiting_on_a_lock(source, args)
    elif case.slow_upload:
        # Every part takes 2 s to upload, so the dump lasts longer than the timeout
        # while the snapshot's connection sits idle in its transaction.
        with faulty_proxy(moto_server, part_delay=2.0) as proxy:
            backup = cli(*args, "--part-size", str(PART), env={**tools, "AWS_ENDPOINT_URL": proxy})
    else:
        backup = cli(*args, env=tools)
    assert backup.returncode == 0, backup.stderr
    manifest = json.loads(backup.stdout)
    assert manifest["database"] == source.rsplit("/", 1)[1]
    counts = {f"{t['schema']}.{t['table']}": t["rows"] for t in manifest["tables"]}
    assert {k: v for k, v in counts.items() if k in expected_rows} == expected_rows
    if case.slow_upload:  # the precondition: the snapshot sat idle longer than the timeout
        assert manifest["duration_seconds"] > 2.0

    # The watch looks every 0.2 s at the least: twice the idle case's timeout.
    watch = ["--lock-wait-timeout", "2"] if case.idle else []
    restored = cli(
        "restore", "--bucket", bucket, "--key", manifest["dump_key"], "--database-url", target,
        *watch, env=tools,
    )  # fmt: skip
    assert restored.returncode == 0, restored.stderr
    assert "no longer watched" not in restored.stderr
    assert fingerprint(canonical(target)) == fingerprint(canonical(source))

    with scratch_role(server, case.name, case.value) as scratch:
        verified = cli(
            "verify", "--bucket", bucket, "--key", manifest["dump_key"], "--scratch-url", scratch,
            env=tools,
        )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    verdict_key = manifest["manifest_key"].replace(".manifest.json", ".verified.json")
    verdict = json.loads(s3.get_object(Bucket=bucket, Key=verdict_key)["Body"].read())
    assert verdict["verdict"] == "passed"
    assert verify_leftovers(server, manifest) == []
    for result in (backup, restored, verified):
        assert "Traceback" not in result.stderr
        assert BACKUP_PASSWORD not in result.stdout + result.stderr


def test_session_settings_are_version_aware():
    assert "transaction_timeout" not in session_settings(160004)
    assert session_settings(170000)["transaction_timeout"] == "0"
    assert session_settings(150000)["search_path"] == ""
    assert session_settings(150000)["xmloption"] == "content"
    assert session_settings(150000)["enable_tidscan"] == "on"  # ctid ranges stay range scans
    assert "default_transaction_read_only" not in session_settings(150000)
    assert session_settings(150000, writable=True)["default_transaction_read_only"] == "off"
    assert "idle_session_timeout" not in session_settings(130000)
    assert session_settings(140000)["idle_session_timeout"] == "0"
    assert restore_settings(150000)["idle_session_timeout"] == "0"
    assert "transaction_timeout" not in restore_settings(150000)
    assert restore_settings(180000)["transaction_timeout"] == "0"


def test_pgoptions_appends_to_the_users_own_and_escapes():
    assert pgoptions("", {"a": "1"}) == "-c a=1"
    assert pgoptions("-c geqo=off", {"DateStyle": "ISO, DMY"}) == (
        "-c geqo=off -c DateStyle=ISO,\\ DMY"
    )
    assert pgoptions("", {"x": "a\\b"}) == "-c x=a\\\\b"


def test_pg_restore_gets_the_settings_it_may_not_know(pg, make_database):
    """A role's statement_timeout is overridden for a child through PGOPTIONS."""
    from pgautodumper.connection import ConnectionInfo

    url = make_database()
    dbname = url.rsplit("/", 1)[1]
    pg.psql(f"ALTER DATABASE \"{dbname}\" SET statement_timeout = '50ms'")
    pg.psql(f'ALTER DATABASE "{dbname}" SET default_transaction_read_only = on')
    info = ConnectionInfo.from_url(url)
    env = info.libpq_env(settings=restore_settings(server_version_num(pg)))
    psql = pg.bin_dir / "psql"
    result = subprocess.run(
        [str(psql), "-X", "-At", "-w", "-c",
         "SELECT current_setting('statement_timeout'), "
         "current_setting('default_transaction_read_only'), pg_sleep(0.2)"],
        env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith("0|off")


def test_the_snapshot_connection_dying_mid_stream_stores_nothing(
    make_database, pg, bucket, s3, moto_server
):
    """Whatever ends the snapshot's session, the upload is aborted and the error is named."""
    source = make_database(INCOMPRESSIBLE)
    dbname = source.rsplit("/", 1)[1]
    with faulty_proxy(moto_server, part_delay=2.0) as proxy:
        process = start_cli(
            "backup", "--database-url", source, "--bucket", bucket, "--name", "lost",
            "--part-size", str(PART), env={"AWS_ENDPOINT_URL": proxy},
        )  # fmt: skip
        leader = _wait_for_leader_mid_stream(pg, dbname, s3, bucket, process)
        pg.psql(f"SELECT pg_terminate_backend({leader})")
        _, stderr = process.communicate(timeout=300)

    assert process.returncode == 21, stderr
    assert "the connection holding the dump's snapshot" in stderr
    assert "nothing was stored" in stderr
    assert "Traceback" not in stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.parametrize("backup_format", ["2", "1"])
def test_a_link_reset_mid_stream_is_named_and_retryable(
    pg, make_database, bucket, s3, backup_format
):
    """The network drops a COPY stream's connection (a reset: the server stays up and
    said nothing): DatabaseUnreachableError (11), which the task retries; nothing stored."""
    source = make_database(INCOMPRESSIBLE)
    with breaking_link(pg.port, after_bytes=2 * 1024 * 1024) as port:
        through = source.replace(f":{pg.port}/", f":{port}/")
        result = subprocess.run(
            [sys.executable, "-m", "pgautodumper", "backup", "--database-url", through,
             "--bucket", bucket, "--name", "reset", "--format", backup_format,
             "--stream-threshold-bytes", str(PART)],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    assert result.returncode == 11, result.stderr
    assert "broke during the backup" in result.stderr and "Traceback" not in result.stderr
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def _wait_for_leader_mid_stream(pg, dbname, s3, bucket, process) -> int:
    """The pid of the backup's snapshot session, once its upload has started."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        pids = pg.psql(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgautodumper'"
            f" AND datname = '{dbname}' AND xact_start IS NOT NULL"
        ).split()
        if pids and s3.list_multipart_uploads(Bucket=bucket).get("Uploads"):
            return int(pids[0])
        time.sleep(0.05)
    pytest.fail("the backup never started streaming")
