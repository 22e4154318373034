"""`pgautodumper local-run` as a user runs it: a real child process, exit code, report."""

from __future__ import annotations

import json

import psycopg
import pytest

from tests.conftest import BACKUP_PASSWORD

# Whole workflows on the emulator, mostly waiting on it: alongside the rest.
pytestmark = [pytest.mark.slow, pytest.mark.background]


def test_local_run_backs_up_a_given_database(cli, make_database, tmp_path):
    url = make_database("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")
    history = tmp_path / "history.json"
    result = cli(
        "local-run",
        "--database-url",
        url + "?sslmode=disable",
        "--no-verify",
        "--json",
        "--history-out",
        str(history),
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "SUCCEEDED"
    assert report["report"]["dump"]["tables"] == 1
    assert report["report"]["dump"]["total_rows"] == 1000
    assert "→ Dump" in result.stderr and "→ Verify\n" not in result.stderr
    events = json.loads(history.read_text())
    assert any(e["type"] == "ExecutionSucceeded" for e in events)
    for text in (result.stdout, result.stderr, history.read_text()):
        assert BACKUP_PASSWORD not in text


def test_a_failure_drill_exits_non_zero(cli, make_database):
    url = make_database("CREATE TABLE t AS SELECT 1 AS x")
    result = cli(
        "local-run", "--database-url", url + "?sslmode=disable", "--scenario", "AuthFailure"
    )

    assert result.returncode == 1, result.stderr[-3000:]
    assert "status: FAILED" in result.stdout
    assert "notifications: 1" in result.stdout
    assert BACKUP_PASSWORD not in result.stdout + result.stderr


# Hostile settings at DATABASE level, all at once: every session the workflow opens
# (preflight Lambda, dump task, verify task) starts under them.
HOSTILE = {
    "statement_timeout": "'100ms'",
    "lock_timeout": "'100ms'",
    "idle_in_transaction_session_timeout": "'1s'",
    "DateStyle": "'SQL, DMY'",
    "IntervalStyle": "'iso_8601'",
    "TimeZone": "'Pacific/Chatham'",
    "extra_float_digits": "-15",
    "search_path": "''",
    "default_transaction_isolation": "'serializable'",
    "default_transaction_read_only": "on",
}


def _request_file(tmp_path, **fields) -> str:
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"name": "app", **fields}))
    return str(path)


def test_local_run_request_under_hostile_database_settings(cli, make_database, pg, tmp_path):
    url = make_database(
        "CREATE TABLE readings AS SELECT g AS id, now() - g * interval '1 day 3 hours' AS at,"
        " g / 7.0::float8 AS f FROM generate_series(1, 2000) g"
    )
    database = url.rsplit("/", 1)[1]
    for name, value in HOSTILE.items():
        pg.psql(f'ALTER DATABASE "{database}" SET {name} = {value}')

    request = _request_file(tmp_path, verify=True)
    result = cli(
        "local-run", "--database-url", url + "?sslmode=disable", "--request", request, "--json"
    )

    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "SUCCEEDED", report
    assert report["report"]["dump"]["total_rows"] == 2000
    assert report["report"]["verify"]["verdict"] == "passed", report["report"]["verify"]


def test_local_run_request_fails_by_name_on_a_table_a_migration_holds(cli, make_database, tmp_path):
    url = make_database("CREATE TABLE invoices AS SELECT 1 AS id")
    request = _request_file(tmp_path, lock_wait_timeout_seconds=2)
    with psycopg.connect(url) as migration:
        migration.execute("LOCK TABLE invoices IN ACCESS EXCLUSIVE MODE")
        result = cli(
            "local-run", "--database-url", url + "?sslmode=disable", "--request", request, "--json"
        )

    assert result.returncode == 1, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["status"] == "FAILED"
    assert report["error"] == "LockTimeoutError", report
    assert "public.invoices" in report["cause"], report
