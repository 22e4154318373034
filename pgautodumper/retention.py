"""The retention policy: which complete backups to keep, as a pure function.

Grandfather-father-son as restic defines it: each rule is applied on its own
to the backups sorted newest first, and a backup is kept when any rule keeps
it.

    keep_last N     the newest N backups
    keep_daily N    the newest backup of each of the newest N days that have one
    keep_weekly N   ... of each of the newest N ISO weeks
    keep_monthly N  ... of each of the newest N months
    keep_yearly N   ... of each of the newest N years

Periods are UTC calendar periods of the backup's start time. Whatever the
rules say, the newest verified backup and the backup of the current run are
never deleted: retention must not destroy the last good backup (design
invariant 6). Only complete backups (manifest present) are given to
:func:`plan`; leftovers without a manifest are the business of
:func:`stale_incomplete`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict

from pgautodumper.contract import RetentionPolicy


class Candidate(BaseModel):
    """What the policy needs to know about one complete backup."""

    model_config = ConfigDict(frozen=True)

    stem: str
    started_at: datetime
    verified: bool = False


class Decision(BaseModel):
    stem: str
    started_at: datetime
    keep: bool
    reasons: list[str]


class RetentionPlan(BaseModel):
    """Every candidate with its fate, newest first."""

    decisions: list[Decision]

    @property
    def keep(self) -> list[Decision]:
        return [d for d in self.decisions if d.keep]

    @property
    def delete(self) -> list[Decision]:
        return [d for d in self.decisions if not d.keep]


_PERIODS: tuple[tuple[str, Callable[[datetime], tuple[int, ...]]], ...] = (
    ("daily", lambda at: (at.year, at.month, at.day)),
    ("weekly", lambda at: tuple(at.isocalendar()[:2])),
    ("monthly", lambda at: (at.year, at.month)),
    ("yearly", lambda at: (at.year,)),
)


def _newest_first(backups: Iterable[Candidate]) -> list[Candidate]:
    # The stem breaks ties so the order (and so the plan) never depends on input order.
    return sorted(backups, key=lambda b: (b.started_at, b.stem), reverse=True)


def plan(
    backups: Sequence[Candidate], policy: RetentionPolicy, *, current_stem: str | None = None
) -> RetentionPlan:
    """Decide keep or delete for every complete backup, with the reasons to keep."""
    ordered = _newest_first(backups)
    reasons: dict[str, list[str]] = {b.stem: [] for b in ordered}

    for index, backup in enumerate(ordered[: policy.keep_last]):
        reasons[backup.stem].append(f"last {index + 1}/{policy.keep_last}")

    for label, period_of in _PERIODS:
        limit = getattr(policy, f"keep_{label}")
        seen: list[tuple[int, ...]] = []
        for backup in ordered:
            if len(seen) >= limit:
                break
            period = period_of(backup.started_at)
            if period not in seen:
                seen.append(period)
                reasons[backup.stem].append(f"{label} {len(seen)}/{limit}")

    newest_verified = next((b for b in ordered if b.verified), None)
    if newest_verified is not None:
        reasons[newest_verified.stem].append("newest verified backup")
    if current_stem is not None and current_stem in reasons:
        reasons[current_stem].append("backup of the current run")

    return RetentionPlan(
        decisions=[
            Decision(
                stem=b.stem,
                started_at=b.started_at,
                keep=bool(reasons[b.stem]),
                reasons=reasons[b.stem] or ["matches no keep rule"],
            )
            for b in ordered
        ]
    )


def stale_incomplete(
    leftovers: Iterable[tuple[str, datetime]], *, now: datetime, grace_hours: int
) -> list[str]:
    """Stems of leftovers without a manifest whose newest object is older than the grace.

    A dump still being uploaded (or a manifest about to be written) is younger
    than the grace period, so a running backup is never pulled from under
    its own feet.
    """
    cutoff = now - timedelta(hours=grace_hours)
    return sorted(stem for stem, last_modified in leftovers if last_modified < cutoff)
