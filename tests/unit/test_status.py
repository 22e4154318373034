"""`pgautodumper status`: each state, the exit code, and that it reads no dump (moto S3)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pgautodumper import status
from tests.lambdas.conftest import put_backup

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def backups(s3, bucket):
    """One name in every state."""
    for days in (3, 2, 1):  # fresh and verified: OK
        put_backup(s3, bucket, "ok", NOW - timedelta(days=days, hours=-1), size=1000 * days,
                   verdict="passed" if days == 1 else None, prefix="p")  # fmt: skip
    put_backup(s3, bucket, "stale", NOW - timedelta(days=3), verdict="passed", prefix="p")
    put_backup(s3, bucket, "never", NOW - timedelta(hours=1), complete=False, prefix="p")
    put_backup(s3, bucket, "unverified", NOW - timedelta(hours=2), prefix="p")
    put_backup(s3, bucket, "failing", NOW - timedelta(hours=3), verdict="failed", prefix="p")
    put_backup(s3, bucket, "other-prefix", NOW - timedelta(days=9), prefix="elsewhere")
    return bucket


def test_every_state_and_its_reason(backups) -> None:
    rows = {row.name: row for row in status.status(backups, "p", now=NOW)}
    assert {name: row.state for name, row in rows.items()} == {
        "ok": "OK",
        "stale": "STALE",
        "never": "STALE",
        "unverified": "UNVERIFIED",
        "failing": "FAILED-VERIFY",
    }
    ok = rows["ok"]
    assert ok.backups == 3 and ok.sizes == [3000, 2000, 1000]
    assert ok.last_backup.duration_seconds == 8.0 and ok.last_backup.stored_bytes == 1000
    assert ok.last_verify.verdict == "passed" and ok.last_verify.restore_seconds == 1.0
    assert rows["never"].reason == "no complete backup" and rows["never"].last_backup is None
    assert "h old" in rows["stale"].reason


def test_windows_decide_stale_and_unverified() -> None:
    backup = status.LastBackup(key="k", started_at=NOW, age_hours=30, stored_bytes=1,
                               duration_seconds=1.0)  # fmt: skip
    verify = status.LastVerify(key="v", checked_at=NOW, age_hours=100, verdict="passed",
                               restore_seconds=2.0)  # fmt: skip
    judge = status.judge
    assert (
        judge(backup, verify, max_age=timedelta(hours=26), verify_max_age=timedelta(days=8))[0]
        == "STALE"
    )
    assert (
        judge(backup, verify, max_age=timedelta(hours=48), verify_max_age=timedelta(hours=99))[0]
        == "UNVERIFIED"
    )
    assert (
        judge(backup, verify, max_age=timedelta(hours=48), verify_max_age=timedelta(days=8))[0]
        == "OK"
    )


def test_sparkline_follows_the_sizes() -> None:
    assert status.sparkline([1, 5, 9]) == "▁▄█"
    assert status.sparkline([7, 7]) == "▁▁"
    assert status.sparkline([]) == ""


def test_the_cli_exits_non_zero_when_a_name_is_not_ok(cli, s3, backups) -> None:
    result = cli("status", "--bucket", backups, "--prefix", "p", "--json")
    assert result.returncode == 1, result.stderr
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == ["failing", "never", "ok", "stale", "unverified"]

    text = cli("status", "--bucket", backups, "--prefix", "p")
    assert text.returncode == 1 and "FAILED-VERIFY" in text.stdout and "▁" in text.stdout

    healthy = cli("status", "--bucket", backups, "--prefix", "p", "--json",
                  "--max-age", str(24 * 10), "--verify-max-age", str(24 * 10))  # fmt: skip
    states = {r["name"]: r["state"] for r in json.loads(healthy.stdout)}
    assert states["stale"] == "OK" and states["never"] == "STALE"


def test_all_ok_exits_zero(cli, s3, bucket) -> None:
    put_backup(s3, bucket, "db", NOW - timedelta(hours=1), verdict="passed")
    result = cli("status", "--bucket", bucket, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["state"] == "OK"


def test_the_freshness_lambda_publishes_hours_since_per_name(backups, monkeypatch, capsys):
    from lambdas import freshness
    from tests.lambdas.conftest import FakeContext, emf_records

    monkeypatch.setenv("PGAUTODUMPER_BUCKET", backups)
    monkeypatch.setenv("PGAUTODUMPER_PREFIX", "p")
    output = freshness.handler({}, FakeContext())
    assert {row["name"] for row in output["names"]} == {
        "ok", "stale", "never", "unverified", "failing"
    }  # fmt: skip
    records = emf_records(capsys.readouterr().out)
    published = {
        (r["Name"], name)
        for r in records
        for name in ("HoursSinceLastBackup", "HoursSinceLastVerify")
        if name in r
    }
    assert ("ok", "HoursSinceLastBackup") in published
    assert ("ok", "HoursSinceLastVerify") in published
    assert ("failing", "HoursSinceLastVerify") not in published  # only passing verifies count
    assert all(r["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Name"]] for r in records)


def test_a_damaged_manifest_or_verdict_is_skipped_not_fatal(cli, s3, bucket) -> None:
    """One unreadable object must not hide every other name's state (nor stop the
    Freshness Lambda, whose metrics feed every name's missed-backup alarm)."""
    older = put_backup(s3, bucket, "db", NOW - timedelta(hours=5), verdict="passed")
    newest = put_backup(s3, bucket, "db", NOW - timedelta(hours=1), verdict="passed")
    s3.put_object(Bucket=bucket, Key=newest.manifest, Body=b"{not json")
    s3.put_object(Bucket=bucket, Key=newest.verified, Body=b"garbage")
    put_backup(s3, bucket, "fine", NOW - timedelta(hours=1), verdict="passed")

    rows = {row.name: row for row in status.status(bucket, None, now=NOW)}
    assert rows["fine"].state == "OK"
    # The newest cannot be restored: the older one is the last backup, and its verify stands.
    assert rows["db"].last_backup.key == older.manifest
    assert rows["db"].last_verify.key == older.verified and rows["db"].state == "OK"

    listed = cli("list", "--bucket", bucket, "--name", "db", "--json")
    assert listed.returncode == 0, listed.stderr
    problems = [row["problem"] for row in json.loads(listed.stdout)]
    assert problems[1] is None and f"{newest.manifest} is not valid" in problems[0]
    text = cli("list", "--bucket", bucket, "--name", "db")
    assert "UNREADABLE" in text.stdout and "passed" in text.stdout
