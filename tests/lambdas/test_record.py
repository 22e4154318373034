"""Record: the manifest read back and checked, the size anomaly, the EMF metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from lambdas import record as record_lambda
from lambdas import record_verify as record_verify_lambda
from pgautodumper import layout
from pgautodumper.contract import DumpResult, VerifyResult
from pgautodumper.errors import BackupNotFoundError, ManifestError, UsageError
from tests.lambdas.conftest import (
    emf_records,
    execution_context,
    execution_document,
    make_manifest,
    preflight_result,
    put_backup,
)

NOW = datetime(2024, 6, 1, 3, 0, tzinfo=UTC)


def document(bucket: str, keys: layout.BackupKeys) -> dict:
    return execution_document(
        name=keys.name,
        secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:x",
        bucket=bucket,
        prefix=keys.prefix,
        preflight=preflight_result(keys, bucket),
    )


def test_result_and_metrics_of_a_normal_backup(leaks, s3, bucket):
    put_backup(s3, bucket, "app", NOW - timedelta(days=1), prefix="p", size=1200)
    keys = put_backup(s3, bucket, "app", NOW, prefix="p", size=1000, tables=3)

    output = leaks.invoke(record_lambda.handler, document(bucket, keys))

    result = DumpResult.model_validate(output)
    assert (result.dump_key, result.manifest_key) == (keys.dump, keys.manifest)
    assert (result.stored_bytes, result.raw_bytes, result.tables) == (1000, 4000, 3)
    assert result.total_rows == 0 + 10 + 20
    assert result.duration_seconds == 8.0
    assert result.throughput_bytes_per_second == 500.0
    assert result.previous_stored_bytes == 1200
    assert result.size_anomaly is False

    [emf] = emf_records(leaks.read())
    directive = emf["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "pgautodumper"
    assert directive["Dimensions"] == [["Name"]], "the dead-man alarm names exactly this set"
    assert emf["Name"] == "app"
    units = {m["Name"]: m["Unit"] for m in directive["Metrics"]}
    assert units == {
        "BackupSucceeded": "Count",
        "BackupBytes": "Bytes",
        "BackupRawBytes": "Bytes",
        "BackupDurationSeconds": "Seconds",
        "BackupThroughputBytesPerSecond": "Bytes/Second",
    }
    values = {name: emf[name] for name in units}
    assert values == {
        "BackupSucceeded": [1.0],
        "BackupBytes": [1000.0],
        "BackupRawBytes": [4000.0],
        "BackupDurationSeconds": [8.0],
        "BackupThroughputBytesPerSecond": [500.0],
    }


def test_a_backup_far_smaller_than_the_previous_is_flagged(leaks, s3, bucket, monkeypatch):
    put_backup(s3, bucket, "app", NOW - timedelta(days=2), size=100)  # older, not the previous
    put_backup(s3, bucket, "app", NOW - timedelta(days=1), size=5000)
    put_backup(s3, bucket, "app", NOW - timedelta(hours=1), size=1, complete=False)  # leftover
    keys = put_backup(s3, bucket, "app", NOW, size=2400)

    result = DumpResult.model_validate(leaks.invoke(record_lambda.handler, document(bucket, keys)))
    assert (result.previous_stored_bytes, result.size_anomaly) == (5000, True)
    assert "below 50% of the previous backup" in leaks.read()

    monkeypatch.setenv("PGAUTODUMPER_SIZE_ANOMALY_FRACTION", "0.4")
    result = DumpResult.model_validate(leaks.invoke(record_lambda.handler, document(bucket, keys)))
    assert result.size_anomaly is False


def test_first_backup_has_no_previous(leaks, s3, bucket):
    keys = put_backup(s3, bucket, "app", NOW)
    result = DumpResult.model_validate(leaks.invoke(record_lambda.handler, document(bucket, keys)))
    assert (result.previous_stored_bytes, result.size_anomaly) == (None, False)


def test_missing_manifest_is_backup_not_found(leaks, s3, bucket):
    keys = put_backup(s3, bucket, "app", NOW, complete=False)
    with pytest.raises(BackupNotFoundError, match="not a complete backup"):
        leaks.invoke(record_lambda.handler, document(bucket, keys))
    assert emf_records(leaks.read()) == [], "no BackupSucceeded for a failed record"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"format_version": 99}, "format_version 99"),
        ({"tables": []}, "lists no tables"),
        ({"stored_bytes": 0}, "sizes are 0 stored"),
        ({"name": "other"}, "names backup 'other'"),
    ],
)
def test_manifest_that_fails_its_checks_is_a_manifest_error(leaks, s3, bucket, override, message):
    keys = put_backup(s3, bucket, "app", NOW, complete=False)
    s3.put_object(Bucket=bucket, Key=keys.manifest, Body=make_manifest(keys, 1000, **override))
    with pytest.raises(ManifestError, match=message) as info:
        leaks.invoke(record_lambda.handler, document(bucket, keys))
    assert keys.manifest in str(info.value)
    assert emf_records(leaks.read()) == []


def test_invalid_anomaly_fraction_is_a_usage_error(leaks, s3, bucket, monkeypatch):
    keys = put_backup(s3, bucket, "app", NOW)
    monkeypatch.setenv("PGAUTODUMPER_SIZE_ANOMALY_FRACTION", "half")
    with pytest.raises(UsageError, match="PGAUTODUMPER_SIZE_ANOMALY_FRACTION"):
        leaks.invoke(record_lambda.handler, document(bucket, keys))


# -- RecordVerify ---------------------------------------------------------------------


def verify_document(bucket: str, keys: layout.BackupKeys, started: datetime) -> dict:
    event = document(bucket, keys)
    event["execution"] = execution_context("arn:aws:states:::execution:m:run", started)
    return event


def test_record_verify_returns_the_verdict_and_the_recovery_time(leaks, s3, bucket):
    keys = put_backup(s3, bucket, "app", NOW, verdict="passed")
    output = leaks.invoke(
        record_verify_lambda.handler, verify_document(bucket, keys, NOW - timedelta(minutes=5))
    )
    result = VerifyResult.model_validate(output)
    assert (result.verdict, result.verified_key, result.restore_seconds) == (
        "passed",
        keys.dump,
        1.0,
    )
    [emf] = emf_records(leaks.read())
    assert emf["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Name"]]
    assert (emf["Name"], emf["RestoreSeconds"]) == ("app", [1.0])


def test_record_verify_of_a_failed_verdict_reports_it_without_a_recovery_metric(leaks, s3, bucket):
    keys = put_backup(s3, bucket, "app", NOW, verdict="failed")
    output = leaks.invoke(
        record_verify_lambda.handler, verify_document(bucket, keys, NOW - timedelta(minutes=5))
    )
    assert VerifyResult.model_validate(output).verdict == "failed"
    assert emf_records(leaks.read()) == []


def test_record_verify_refuses_a_verdict_older_than_the_run(leaks, s3, bucket):
    keys = put_backup(s3, bucket, "app", NOW, verdict="passed")
    with pytest.raises(ManifestError, match="left no verdict of this run"):
        leaks.invoke(
            record_verify_lambda.handler, verify_document(bucket, keys, NOW + timedelta(hours=1))
        )
