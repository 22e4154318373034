"""`pgautodumper local-run` as a user runs it: a real child process, exit code, report."""

from __future__ import annotations

import json

import pytest

from tests.conftest import BACKUP_PASSWORD

pytestmark = pytest.mark.slow


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
