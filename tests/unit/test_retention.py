"""The retention policy: examples, then the invariants as hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from pgautodumper.contract import RetentionPolicy
from pgautodumper.retention import Candidate, plan, stale_incomplete

START = datetime(2024, 1, 1, tzinfo=UTC)


def backup(at: datetime, verified: bool = False) -> Candidate:
    return Candidate(stem=f"db/{at:%Y%m%dT%H%M%SZ}", started_at=at, verified=verified)


def daily(days: int, hour: int = 3) -> list[Candidate]:
    return [backup(START + timedelta(days=d, hours=hour)) for d in range(days)]


def policy(**kw: int) -> RetentionPolicy:
    base = {"keep_last": 1, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}
    return RetentionPolicy(**{**base, **kw})


def kept(backups: list[Candidate], p: RetentionPolicy, **kw) -> set[str]:
    return {d.stem for d in plan(backups, p, **kw).keep}


def test_keep_last_keeps_exactly_the_newest_n():
    backups = daily(10)
    assert kept(backups, policy(keep_last=3)) == {b.stem for b in backups[-3:]}


def test_keep_daily_keeps_the_newest_of_each_day():
    # Two backups a day for 5 days: keep_daily=3 keeps the later one of the 3 newest days.
    backups = daily(5, hour=1) + daily(5, hour=13)
    result = kept(backups, policy(keep_last=1, keep_daily=3))
    assert result == {b.stem for b in daily(5, hour=13)[-3:]}


def test_weekly_monthly_yearly_count_calendar_periods():
    backups = daily(400)  # 2024-01-01 .. 2025-02-03
    result = plan(backups, policy(keep_last=1, keep_weekly=2, keep_monthly=3, keep_yearly=2))
    kept_dates = sorted(d.started_at.date().isoformat() for d in result.keep)
    # Newest (last/weekly/monthly/yearly of the newest periods), the Sunday ending the
    # previous ISO week, the last days of the two previous months, the last day of 2024.
    assert kept_dates == ["2024-12-31", "2025-01-31", "2025-02-02", "2025-02-03"]
    reasons = {d.started_at.date().isoformat(): d.reasons for d in result.keep}
    assert "yearly 2/2" in reasons["2024-12-31"]
    assert "monthly 3/3" in reasons["2024-12-31"]


def test_newest_verified_and_current_run_are_kept_whatever_the_rules():
    backups = daily(10)
    backups[2] = backup(backups[2].started_at, verified=True)
    backups[0] = backup(backups[0].started_at, verified=True)
    current = backups[5].stem
    result = plan(backups, policy(keep_last=1), current_stem=current)
    assert {d.stem for d in result.keep} == {backups[-1].stem, backups[2].stem, current}
    reasons = {d.stem: d.reasons for d in result.decisions}
    assert reasons[backups[2].stem] == ["newest verified backup"]
    assert reasons[current] == ["backup of the current run"]
    assert reasons[backups[0].stem] == ["matches no keep rule"]


def test_stale_incomplete_respects_the_grace_period():
    now = START + timedelta(days=2)
    leftovers = [("old", now - timedelta(hours=25)), ("young", now - timedelta(hours=23))]
    assert stale_incomplete(leftovers, now=now, grace_hours=24) == ["old"]


# -- properties -----------------------------------------------------------------------

timestamps = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2026, 12, 31), timezones=st.just(UTC)
).map(lambda t: t.replace(microsecond=0))
candidates = st.lists(
    st.builds(backup, timestamps, st.booleans()), max_size=60, unique_by=lambda c: c.stem
)
policies = st.builds(
    RetentionPolicy,
    keep_last=st.integers(1, 10),
    keep_daily=st.integers(0, 10),
    keep_weekly=st.integers(0, 6),
    keep_monthly=st.integers(0, 6),
    keep_yearly=st.integers(0, 3),
)


def newest_first(backups: list[Candidate]) -> list[Candidate]:
    return sorted(backups, key=lambda b: (b.started_at, b.stem), reverse=True)


@given(candidates, policies)
def test_never_deletes_the_newest_keep_last(backups, p):
    deleted = {d.stem for d in plan(backups, p).delete}
    assert not deleted & {b.stem for b in newest_first(backups)[: p.keep_last]}


@given(candidates, policies)
def test_never_deletes_the_newest_verified(backups, p):
    verified = [b for b in newest_first(backups) if b.verified]
    deleted = {d.stem for d in plan(backups, p).delete}
    if verified:
        assert verified[0].stem not in deleted


@given(candidates, policies, st.data())
def test_never_deletes_the_current_run(backups, p, data):
    if not backups:
        return
    current = data.draw(st.sampled_from(backups)).stem
    assert current not in {d.stem for d in plan(backups, p, current_stem=current).delete}


@given(candidates, policies)
def test_idempotent(backups, p):
    first = plan(backups, p)
    survivors = [b for b in backups if b.stem in {d.stem for d in first.keep}]
    assert plan(survivors, p).delete == []


@given(candidates, policies, st.integers(1, 400), st.booleans())
@settings(max_examples=200)
def test_adding_an_older_backup_never_deletes_a_newer_one(backups, p, days_older, verified):
    if not backups:
        return
    oldest = min(b.started_at for b in backups)
    extra = backup(oldest - timedelta(days=days_older), verified=verified)
    before = {d.stem for d in plan(backups, p).keep}
    after = {d.stem for d in plan([*backups, extra], p).keep}
    assert before <= after


@given(candidates, policies)
def test_every_backup_gets_exactly_one_decision_with_reasons(backups, p):
    decisions = plan(backups, p).decisions
    assert sorted(d.stem for d in decisions) == sorted(b.stem for b in backups)
    assert all(d.reasons for d in decisions)
    assert [d.started_at for d in decisions] == sorted(
        (d.started_at for d in decisions), reverse=True
    )
