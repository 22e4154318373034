"""The task reruns a dump or verify after a transient failure, and only then."""

from __future__ import annotations

import pytest

from pgautodumper import task
from pgautodumper.errors import DatabaseUnreachableError, DumpFailedError


def failing(errors: list[Exception]):
    calls = []

    def action() -> str:
        calls.append(len(calls))
        if errors:
            raise errors.pop(0)
        return "done"

    return action, calls


def test_a_server_gone_for_a_while_is_waited_for(monkeypatch):
    monkeypatch.setattr(task, "BACKOFF_SECONDS", 0.0)
    gone = [DatabaseUnreachableError("the server restarted during the backup")] * 3
    action, calls = failing(list(gone))
    assert task.with_retries(action, what="backup") == "done"
    assert len(calls) == 4


def test_attempts_are_bounded_and_the_last_failure_is_raised(monkeypatch):
    monkeypatch.setattr(task, "BACKOFF_SECONDS", 0.0)
    action, calls = failing([DatabaseUnreachableError(f"gone {n}") for n in range(9)])
    with pytest.raises(DatabaseUnreachableError, match="gone 3"):
        task.with_retries(action, what="backup")
    assert len(calls) == task.ATTEMPTS


def test_a_failure_no_rerun_mends_is_raised_at_once(monkeypatch):
    monkeypatch.setattr(task, "BACKOFF_SECONDS", 0.0)
    action, calls = failing([DumpFailedError("pg_dump: permission denied")])
    with pytest.raises(DumpFailedError):
        task.with_retries(action, what="backup")
    assert len(calls) == 1


def test_the_waits_outlast_a_multi_az_failover():
    waits = [task.BACKOFF_SECONDS * 2**n for n in range(task.ATTEMPTS - 1)]
    assert sum(waits) >= 120  # failovers take "typically 60-120 seconds"
