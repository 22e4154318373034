"""The dashboard renders from ``terraform plan`` with its widgets, per database.

The session's scale plan (conftest.py ``scale_plan``: 100 databases, one with its own
alarm window) gives every rendered ``dashboard_body``. Per database there must be:
hours since the last backup (HoursSinceLastBackup) with a horizontal annotation at that
database's alarm window; stored bytes (BackupBytes) and duration (BackupDurationSeconds);
the recovery time of verify runs (RestoreSeconds); failures by error name (a SEARCH over
BackupFailed's Error dimension for that Name). Each body must also keep within
CloudWatch's rules (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html):
at most 500 widgets, a 24-column grid, no overlaps, a region on every metric widget.
Notify's environment and the module outputs link the dashboards.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.terraform.terraform_support import SCALE_PLAN_CHILD

# One Terraform plan, single-threaded: alongside the database tests.
pytestmark = [
    pytest.mark.terraform,
    pytest.mark.slow,
    pytest.mark.background(group=SCALE_PLAN_CHILD),
]

NAMESPACE = "pgautodumper"
PREFIX = "pgautodumper-scale-limits-abcdef"
LONGEST_KEY = "k" + "x" * 56  # tests/terraform/scale: the one with alarm_window_hours = 50
DEFAULT_WINDOW = 26
MAX_WIDGETS = 500
GRID_COLUMNS = 24


def _after(plan: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [
        c["change"]["after"]
        for c in plan["resource_changes"]
        if c["type"] == kind and c["mode"] == "managed"
    ]


@pytest.fixture(scope="module")
def dashboards(scale_plan: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """dashboard name -> its parsed body (every value known at plan time)."""
    found = {}
    for after in _after(scale_plan, "aws_cloudwatch_dashboard"):
        assert after["dashboard_body"] is not None, "the body is unknown at plan time"
        found[after["dashboard_name"]] = json.loads(after["dashboard_body"])
    return found


def _metrics(widget: dict[str, Any]) -> list[list[Any]]:
    return widget["properties"].get("metrics", [])


def _named(widget: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(namespace, metric, Name value) of every plain metric of a widget."""
    found = set()
    for metric in _metrics(widget):
        plain = [part for part in metric if not isinstance(part, dict)]
        if plain:
            namespace, name, *dimensions = plain
            assert dimensions[::2] == ["Name"], f"{name}: the only dimension is Name"
            found.add((namespace, name, dimensions[1]))
    return found


def _expressions(widget: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for m in _metrics(widget) for p in m if isinstance(p, dict) and "expression" in p]


def widgets_of(body: dict[str, Any], database: str) -> dict[str, dict[str, Any]]:
    """The database's widgets, by what they show."""
    found: dict[str, dict[str, Any]] = {}
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        names = {metric for _, metric, value in _named(widget) if value == database}
        searches = [e for e in _expressions(widget) if f'Name="{database}"' in e["expression"]]
        if "HoursSinceLastBackup" in names:
            found["freshness"] = widget
        if {"BackupBytes", "BackupDurationSeconds"} <= names:
            found["size"] = widget
        if "RestoreSeconds" in names:
            found["recovery"] = widget
        if searches:
            found["failures"] = widget
    return found


def layout_violations(body: dict[str, Any]) -> list[str]:
    """What PutDashboard would refuse or render badly: the checks of the body structure."""
    violations = []
    widgets = body.get("widgets")
    if not isinstance(widgets, list):
        return ["no widgets array"]
    if len(widgets) > MAX_WIDGETS:
        violations.append(f"{len(widgets)} widgets > {MAX_WIDGETS}")
    cells: dict[tuple[int, int], int] = {}
    for index, widget in enumerate(widgets):
        x, y, width, height = (widget.get(k) for k in ("x", "y", "width", "height"))
        if not all(isinstance(v, int) for v in (x, y, width, height)):
            violations.append(f"widget {index}: x, y, width and height must be integers")
            continue
        if not (1 <= width <= GRID_COLUMNS and x >= 0 and x + width <= GRID_COLUMNS):
            violations.append(f"widget {index}: outside the {GRID_COLUMNS}-column grid")
        for column in range(x, x + width):
            for row in range(y, y + height):
                if (column, row) in cells:
                    violations.append(f"widget {index} overlaps widget {cells[column, row]}")
                    break
                cells[column, row] = index
        properties = widget.get("properties", {})
        if widget.get("type") == "metric":
            if not properties.get("region"):
                violations.append(f"widget {index}: a metric widget needs a region")
            if not properties.get("metrics"):
                violations.append(f"widget {index}: no metrics")
            for expression in _expressions(widget):
                # Metric math ids start with a lower-case letter.
                if not re.match(r"^[a-z][a-zA-Z0-9_]*$", expression.get("id", "")):
                    violations.append(f"widget {index}: expression id {expression.get('id')!r}")
    return sorted(set(violations))


def test_every_database_has_its_four_widgets_on_exactly_one_dashboard(
    scale_plan: dict[str, Any], dashboards: dict[str, dict[str, Any]]
) -> None:
    names = sorted(scale_plan["planned_values"]["outputs"]["on_demand_inputs"]["value"])
    assert len(names) == 100
    # 100 databases, 50 per dashboard: two dashboards, the first named after the prefix.
    assert sorted(dashboards) == [PREFIX, f"{PREFIX}-2"]
    for name in names:
        holders = [d for d, body in dashboards.items() if widgets_of(body, name)]
        assert len(holders) == 1, f"{name} is on {holders}"
        widgets = widgets_of(dashboards[holders[0]], name)
        assert set(widgets) == {"freshness", "size", "recovery", "failures"}, (name, widgets)


def test_freshness_is_drawn_against_each_database_s_alarm_window(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    checked = 0
    for body in dashboards.values():
        for widget in body["widgets"]:
            named = _named(widget)
            if not any(metric == "HoursSinceLastBackup" for _, metric, _ in named):
                continue
            (database,) = {value for _, _, value in named}
            assert (NAMESPACE, "HoursSinceLastVerify", database) in named
            (line,) = widget["properties"]["annotations"]["horizontal"]
            expected = 50 if database == LONGEST_KEY else DEFAULT_WINDOW
            assert line["value"] == expected, (database, line)
            assert str(expected) in line["label"]
            checked += 1
    assert checked == 100


def test_size_duration_recovery_and_failures_per_database(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    body = dashboards[PREFIX]
    database = "database-000-with-a-fairly-long-name"
    widgets = widgets_of(body, database)
    assert _named(widgets["size"]) == {
        (NAMESPACE, "BackupBytes", database),
        (NAMESPACE, "BackupDurationSeconds", database),
    }
    assert _named(widgets["recovery"]) == {(NAMESPACE, "RestoreSeconds", database)}
    (search,) = _expressions(widgets["failures"])
    schema = "{" + NAMESPACE + ",Error,Name}"
    query = f'{schema} MetricName="BackupFailed" Name="{database}"'
    assert search["expression"] == f"SEARCH('{query}', 'Sum', 3600)"
    # One series per error, labelled with the error's name (a dynamic label).
    assert search["label"] == "${PROP('Dim.Error')}"
    assert widgets["failures"]["properties"]["stat"] == "Sum"


def test_bodies_keep_to_the_dashboard_rules(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, body in dashboards.items():
        assert layout_violations(body) == [], name
        assert re.match(r"^[A-Za-z0-9_-]{1,255}$", name)
        header = body["widgets"][0]
        assert (
            header["type"] == "text"
            and "Generated by Terraform" in header["properties"]["markdown"]
        )
        # Each header links every dashboard (notifications link the first one).
        for other in dashboards:
            assert f"#dashboards/dashboard/{other})" in header["properties"]["markdown"]


def test_the_layout_check_catches_broken_bodies() -> None:
    metric = {"type": "metric", "properties": {"metrics": [["a", "b"]], "region": "x"}}
    body = {
        "widgets": [
            {**metric, "x": 0, "y": 0, "width": 12, "height": 6},
            {**metric, "x": 6, "y": 3, "width": 12, "height": 6},
            {**metric, "x": 20, "y": 9, "width": 6, "height": 6},
            {"type": "metric", "x": 0, "y": 20, "width": 6, "height": 6,
             "properties": {"metrics": [[{"expression": "SEARCH('x', 'Sum')", "id": "E1"}]]}},
        ]
    }  # fmt: skip
    violations = layout_violations(body)
    assert "widget 1 overlaps widget 0" in violations
    assert "widget 2: outside the 24-column grid" in violations
    assert "widget 3: a metric widget needs a region" in violations
    assert "widget 3: expression id 'E1'" in violations
    assert layout_violations({"widgets": [metric] * 501})[0] == "501 widgets > 500"


def test_notifications_and_outputs_link_the_dashboards(scale_plan: dict[str, Any]) -> None:
    outputs = scale_plan["planned_values"]["outputs"]
    url = outputs["dashboard_url"]["value"]
    assert url == (
        "https://eu-central-1.console.aws.amazon.com/cloudwatch/home?region=eu-central-1"
        f"#dashboards/dashboard/{PREFIX}"
    )
    by_database = outputs["dashboard_urls"]["value"]
    assert len(by_database) == 100
    assert set(by_database.values()) == {url, f"{url}-2"}
    (notify,) = [
        after
        for after in _after(scale_plan, "aws_lambda_function")
        if after["function_name"] == f"{PREFIX}-notify"
    ]
    assert notify["environment"][0]["variables"]["PGAUTODUMPER_DASHBOARD_URL"] == url
