from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgautodumper import layout
from pgautodumper.errors import UsageError

AT = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)


def test_keys_follow_the_documented_layout():
    keys = layout.backup_keys("/backups/prod/", "orders", AT, "exec-1")
    assert keys.dump == "backups/prod/orders/2026/03/04/20260304T050607Z-exec-1.dump.zst"
    assert keys.manifest == "backups/prod/orders/2026/03/04/20260304T050607Z-exec-1.manifest.json"
    assert keys.verified.endswith("20260304T050607Z-exec-1.verified.json")
    assert layout.lock_key("backups/prod", "orders") == "backups/prod/orders/.lock"


def test_same_run_same_keys():
    assert layout.backup_keys("", "db", AT, "r1") == layout.backup_keys("", "db", AT, "r1")


@given(
    prefix=st.sampled_from(["", "a", "a/b", "x-y/z_1"]),
    name=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}", fullmatch=True),
    run_id=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True),
    at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
)
def test_every_key_parses_back(prefix, name, run_id, at):
    keys = layout.backup_keys(prefix, name, at, run_id)
    for key in (keys.dump, keys.manifest, keys.verified):
        assert layout.parse_key(key, prefix) == keys
        assert layout.keys_for(key) == keys


def test_other_objects_are_not_backups():
    assert layout.parse_key("db/.lock") is None
    assert layout.parse_key("db/2026/01/01/notes.txt") is None


def test_execution_arns_become_run_ids():
    arn = "arn:aws:states:us-east-1:123456789012:execution:backup:2026-01-01T00.00.00Z"
    assert layout.sanitize_run_id(arn) == "2026-01-01T00-00-00Z"


@pytest.mark.parametrize("bad", ["", "a/b", "../x", "-lead", "x" * 200])
def test_bad_names_are_refused(bad):
    with pytest.raises(UsageError):
        layout.check_name(bad)


def test_a_non_backup_key_is_a_usage_error():
    with pytest.raises(UsageError, match="is not a backup key"):
        layout.keys_for("some/random/file.txt")
