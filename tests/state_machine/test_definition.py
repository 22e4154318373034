"""Static checks of state_machine/backup.asl.json: statelint, moto's parser, our rules."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pgautodumper.contract import BackupRequest
from pgautodumper.local.render import PLACEHOLDERS, TEMPLATE, render

# The tasks get one input: the TaskInput Preflight decided (pgautodumper.task.TASK_ENV).
ALLOWED_ENV = {"PGAUTODUMPER_TASK"}
# Where a Catch may lead: a notification, or a state that names a task's failure first.
NOTIFY_STATES = {
    "NotifyFailure", "NotifySkipped", "ReleaseLock", "NotificationFailed",
    "ExplainDumpFailure", "ExplainVerifyFailure",
}  # fmt: skip
VALUES = {
    name: (
        "subnet-aaa,subnet-bbb"
        if name.endswith("_ids")
        else "DISABLED"
        if name == "assign_public_ip"
        else f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
    )
    for name in PLACEHOLDERS
}


@pytest.fixture(scope="module")
def rendered() -> str:
    return render(VALUES)


@pytest.fixture(scope="module")
def states(rendered: str) -> dict:
    return json.loads(rendered)["States"]


def successors(state: dict) -> list[str]:
    nexts = [state["Next"]] if "Next" in state else []
    nexts += [c["Next"] for c in state.get("Catch", [])]
    nexts += [c["Next"] for c in state.get("Choices", [])]
    nexts += [state["Default"]] if "Default" in state else []
    return nexts


def reachable(states: dict, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(successors(states[name]))
    return seen


def test_template_only_has_known_placeholders_inside_strings() -> None:
    text = TEMPLATE.read_text()
    json.loads(text)  # the template itself is valid JSON
    for name in PLACEHOLDERS:
        assert "${" + name + "}" in text, name
    with pytest.raises(Exception, match="no value"):
        render({})


def test_statelint_accepts_the_definition(rendered: str, tmp_path: Path) -> None:
    path = tmp_path / "backup.asl.json"
    path.write_text(rendered)
    statelint = Path(sys.executable).parent / "statelint"
    result = subprocess.run([str(statelint), str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_moto_parser_accepts_the_definition(rendered: str) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    AmazonStateLanguageParser.parse(rendered)


def test_every_state_is_reachable(rendered: str, states: dict) -> None:
    assert reachable(states, json.loads(rendered)["StartAt"]) == set(states)


def test_every_task_has_a_timeout_and_a_catch(states: dict) -> None:
    for name, state in states.items():
        if state["Type"] == "Task":
            assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, name
            assert state.get("Catch"), name


def test_states_all_is_alone_and_last(states: dict) -> None:
    for name, state in states.items():
        for rule in [*state.get("Retry", []), *state.get("Catch", [])]:
            if "States.ALL" in rule["ErrorEquals"]:
                assert rule["ErrorEquals"] == ["States.ALL"], name
        for key in ("Retry", "Catch"):
            rules = state.get(key, [])
            for rule in rules[:-1]:
                assert "States.ALL" not in rule["ErrorEquals"], f"{name}.{key}"


def test_retries_never_cover_auth_or_permission_errors(states: dict) -> None:
    for name, state in states.items():
        for rule in state.get("Retry", []):
            assert rule.get("JitterStrategy") == "FULL", name
            assert rule.get("BackoffRate", 1) > 1, name
            for error in rule["ErrorEquals"]:
                assert "Auth" not in error and "Permission" not in error, (name, error)
                assert "AccessDenied" not in error and error != "States.ALL", (name, error)


def test_every_catch_leads_to_a_notification(states: dict) -> None:
    failure_path = reachable(states, "NotifyFailure")
    for name, state in states.items():
        for rule in state.get("Catch", []):
            if name in failure_path or name.startswith("Notify"):
                continue  # already reporting a failure, or the report itself failed
            target = rule["Next"]
            assert target in NOTIFY_STATES, (name, target)
            # Whatever the target, a notification comes before the end.
            assert reachable(states, target) & {"Notify", "NotifyFailure", "NotifySkipped"}


def test_failure_ends_in_a_fail_state_naming_the_error(states: dict) -> None:
    failed = states["Failed"]
    assert failed["Type"] == "Fail"
    assert failed["ErrorPath"] == "$.error.Error" and failed["CausePath"] == "$.error.Cause"
    assert "ReleaseLockAfterFailure" in reachable(states, "NotifyFailure")


def test_the_skip_path_never_releases_the_lock(states: dict) -> None:
    skip = reachable(states, "NotifySkipped")
    assert not {"ReleaseLock", "ReleaseLockAfterFailure"} & skip
    assert "Skipped" in skip and states["Skipped"]["Type"] == "Succeed"


def test_container_overrides_use_only_allowed_names_and_no_secrets(states: dict) -> None:
    for name in ("Dump", "Verify"):
        params = states[name]["Parameters"]
        assert states[name]["Resource"] == "arn:aws:states:::ecs:runTask.sync"
        assert params["LaunchType"] == "FARGATE" and params["PlatformVersion"] == "1.4.0"
        assert states[name]["TimeoutSecondsPath"] == "$.preflight.sizing.timeout_seconds"
        assert params["StartedBy.$"] == "$.preflight.task.run_id"
        # The request's task sizing is applied: task-level cpu/memory and the container's limit.
        assert params["Overrides"]["Cpu.$"] == "States.Format('{}', $.preflight.sizing.cpu)"
        assert params["Overrides"]["Memory.$"] == "States.Format('{}', $.preflight.sizing.memory)"
        for override in params["Overrides"]["ContainerOverrides"]:
            assert override["Memory.$"] == "$.preflight.sizing.memory"
            names = {item["Name"] for item in override["Environment"]}
            assert names <= ALLOWED_ENV, names - ALLOWED_ENV
            assert override["Environment"][0]["Value.$"] == (
                "States.JsonToString($.preflight.task)"
            )
            assert "password" not in json.dumps(override).lower()
    dump_env = states["Dump"]["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert dump_env["Command"] == ["backup"]
    verify_env = states["Verify"]["Parameters"]["Overrides"]["ContainerOverrides"][0]
    assert verify_env["Command"] == ["verify"]


def test_task_failures_are_named_before_they_are_reported(states: dict) -> None:
    for task, explain in (("Dump", "ExplainDumpFailure"), ("Verify", "ExplainVerifyFailure")):
        assert states[task]["Catch"][-1]["Next"] == explain
        assert states[explain]["Parameters"]["task"] == ("backup" if task == "Dump" else "verify")
        assert states[explain]["ResultPath"] == "$.error"
        # If naming it fails, the raw failure is still reported ($.error is kept).
        assert states[explain]["Catch"][-1]["ResultPath"] != "$.error"
    assert states["ExplainVerifyFailure"]["Next"] == "RecordFailedVerify"
    assert states["RecordFailedVerify"]["ResultPath"] == "$.verify"


def test_fargate_start_failures_are_retried_by_name(states: dict) -> None:
    for task in ("Dump", "Verify"):
        retried = {name for rule in states[task]["Retry"] for name in rule["ErrorEquals"]}
        assert {"ECS.AmazonECSException", "AmazonECS.Unknown"} <= retried
        assert "States.TaskFailed" not in retried  # a task that ran and failed is named, not rerun


def test_defaults_in_the_definition_equal_the_contract(states: dict) -> None:
    expression = states["Start"]["Parameters"]["request.$"]
    literal = expression.split("States.StringToJson('", 1)[1].split("')", 1)[0]
    expected = BackupRequest(name="x", secret_arn="a", bucket="b").model_dump(mode="json")
    for key in ("name", "secret_arn", "bucket"):
        expected.pop(key)
    assert json.loads(literal) == expected


def test_network_configuration_comes_from_the_placeholders(states: dict) -> None:
    vpc = states["Dump"]["Parameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert vpc["Subnets.$"] == "States.StringSplit('subnet-aaa,subnet-bbb', ',')"
    assert vpc["AssignPublicIp"] == "DISABLED"


def test_terraform_templatefile_renders_the_same(tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("SKIPPED LOUDLY: terraform is not on PATH; templatefile parity not checked")
    variables = ", ".join(f'{name} = "{value}"' for name, value in VALUES.items())
    expression = f'templatefile("{TEMPLATE}", {{ {variables} }})'
    result = subprocess.run(
        [terraform, "console"],
        input=f"jsonencode(jsondecode({expression}))\n",
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "TF_IN_AUTOMATION": "1"},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    from_terraform = json.loads(json.loads(result.stdout.strip()))
    assert from_terraform == json.loads(render(VALUES))
