"""The local runtime over moto (patches, Lambda runtime, ECS runner, MockConfigFile),
through its HTTP APIs, with tiny real handlers and tasks."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from pgautodumper.local import ecs_runner, mock_config
from pgautodumper.local.emulator import Emulator
from pgautodumper.local.lambda_runtime import LocalRuntimeError

ROLE = "arn:aws:iam::123456789012:role/test"


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


def make_function(emu: Emulator, name: str, handler: str, env: dict[str, str] | None = None) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.txt", "x")
    iam = emu.client("iam")
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(RoleName="test", AssumeRolePolicyDocument="{}")
    return emu.client("lambda").create_function(
        FunctionName=name, Runtime="python3.12", Role=ROLE, Handler=handler,
        Code={"ZipFile": buffer.getvalue()}, Environment={"Variables": env or {}},
    )["FunctionArn"]  # fmt: skip


def make_machine(emu: Emulator, name: str, states: dict) -> str:
    definition = json.dumps({"StartAt": next(iter(states)), "States": states})
    return emu.client("stepfunctions").create_state_machine(
        name=name, definition=definition, roleArn=ROLE
    )["stateMachineArn"]


def ecs_fixture(
    emu: Emulator, family: str, code: str, env: dict[str, str], *,
    image: str = ecs_runner.LOCAL_IMAGE, log_group: str | None = None,
) -> dict:  # fmt: skip
    """A Fargate task definition without container memory in a VPC without DNS hostnames."""
    logging = {"logConfiguration": {"logDriver": "awslogs", "options": {
        "awslogs-group": log_group, "awslogs-region": "us-east-1",
        "awslogs-stream-prefix": "task"}}} if log_group else {}  # fmt: skip
    ec2, ecs = emu.client("ec2"), emu.client("ecs")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=family, Description="t", VpcId=vpc)["GroupId"]
    cluster = ecs.create_cluster(clusterName=family)["cluster"]["clusterArn"]
    task_def = ecs.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"],
        cpu="256", memory="512",
        containerDefinitions=[{
            "name": "main", "image": image, "essential": True, **logging,
            "entryPoint": [sys.executable, "-c", code],
            "environment": [{"name": k, "value": v} for k, v in env.items()],
        }],
    )["taskDefinition"]["taskDefinitionArn"]  # fmt: skip
    return {"cluster": cluster, "task_def": task_def, "subnet": subnet, "group": group}


def run_task_state(fx: dict, timeout: int = 60, overrides: list | None = None) -> dict:
    return {
        "Type": "Task",
        "Resource": "arn:aws:states:::ecs:runTask.sync",
        "Parameters": {
            "Cluster": fx["cluster"], "TaskDefinition": fx["task_def"], "LaunchType": "FARGATE",
            "NetworkConfiguration": {"AwsvpcConfiguration": {
                "Subnets": [fx["subnet"]], "SecurityGroups": [fx["group"]],
                "AssignPublicIp": "DISABLED"}},
            "Overrides": {"ContainerOverrides": [{"Name": "main",
                "Environment": overrides or []}]},
        },
        "TimeoutSeconds": timeout,
        "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
        "End": True,
    }  # fmt: skip


CAUGHT = {"Caught": {"Type": "Pass", "End": True}}


# -- Lambda ----------------------------------------------------------------------


def test_invoke_runs_the_configured_handler_with_its_environment(emu: Emulator) -> None:
    arn = make_function(
        emu, "echo", "tests.state_machine.fake_handlers.echo", {"FAKE_GREETING": "hello"}
    )
    response = emu.client("lambda").invoke(FunctionName=arn, Payload=b'{"a": 1}')
    payload = json.loads(response["Payload"].read())
    assert "FunctionError" not in response
    assert payload == {
        "event": {"a": 1}, "greeting": "hello", "function_name": "echo",
        "remaining_ms_positive": True,
    }  # fmt: skip
    assert "FAKE_GREETING" not in os.environ  # the function's process had it, not ours


def test_concurrent_invocations_each_see_only_their_own_environment(emu: Emulator) -> None:
    """The race a shared os.environ had: each call runs in a process of its own."""
    arns = [
        make_function(emu, f"env-{i}", "tests.state_machine.fake_handlers.echo",
                      {"FAKE_GREETING": f"hello-{i}"})
        for i in range(6)
    ]  # fmt: skip
    before = dict(os.environ)

    def call(arn: str) -> str:
        response = emu.client("lambda").invoke(FunctionName=arn, Payload=b"{}")
        return json.loads(response["Payload"].read())["greeting"]

    with ThreadPoolExecutor(6) as pool:
        greetings = list(pool.map(call, arns * 3))
    assert greetings == [f"hello-{i}" for i in range(6)] * 3
    assert dict(os.environ) == before


def test_a_raised_exception_becomes_the_error_type(emu: Emulator) -> None:
    arn = make_function(emu, "fails", "tests.state_machine.fake_handlers.fail_connection")
    response = emu.client("lambda").invoke(FunctionName=arn, Payload=b"{}")
    payload = json.loads(response["Payload"].read())
    assert response["FunctionError"] == "Unhandled"
    assert payload["errorType"] == "PreflightConnectionError"
    assert "refused" in payload["errorMessage"]


def test_an_unimportable_handler_is_a_function_error(emu: Emulator) -> None:
    arn = make_function(emu, "missing", "tests.state_machine.no_such_module.handler")
    response = emu.client("lambda").invoke(FunctionName=arn, Payload=b"{}")
    assert json.loads(response["Payload"].read())["errorType"] == "LocalRuntimeError"


def test_asl_retry_and_catch_match_the_exception_class_name(emu: Emulator) -> None:
    arn = make_function(emu, "fails2", "tests.state_machine.fake_handlers.fail_connection")
    machine = make_machine(emu, "retry-catch", {
        "Call": {"Type": "Task", "Resource": arn, "TimeoutSeconds": 30,
                 "Retry": [{"ErrorEquals": ["PreflightConnectionError"], "IntervalSeconds": 1,
                            "MaxAttempts": 1, "BackoffRate": 2.0}],
                 "Catch": [{"ErrorEquals": ["PreflightConnectionError"], "ResultPath": "$.error",
                            "Next": "Caught"}], "End": True},
        **CAUGHT,
    })  # fmt: skip
    result = emu.run_execution(machine, {})
    assert result.status == "SUCCEEDED"
    assert result.output["error"]["Error"] == "PreflightConnectionError"
    attempts = [e for e in result.history if e["type"] == "LambdaFunctionFailed"]
    assert len(attempts) == 2  # the first call and one retry


# -- ECS ------------------------------------------------------------------------------


def test_run_task_sync_runs_the_container_with_merged_environment(emu: Emulator) -> None:
    code = "import os; print(os.environ['FROM_DEF'], os.environ['FROM_OVERRIDE'])"
    fx = ecs_fixture(emu, "ok", code, {"FROM_DEF": "def", "FROM_OVERRIDE": "loses"})
    machine = make_machine(emu, "ecs-ok", {
        "Run": run_task_state(fx, overrides=[{"Name": "FROM_OVERRIDE", "Value": "wins"}]),
        **CAUGHT,
    })  # fmt: skip
    result = emu.run_execution(machine, {})
    assert result.status == "SUCCEEDED", result.history
    assert "error" not in result.output
    assert result.output["LastStatus"] == "STOPPED"
    assert result.output["Containers"][0]["ExitCode"] == 0
    task = emu.tasks.tasks[-1]
    assert task.log().strip() == "def wins"


def test_a_non_zero_exit_fails_the_state_with_the_task_as_cause(emu: Emulator) -> None:
    fx = ecs_fixture(emu, "bad", "import sys; sys.exit(21)", {})
    machine = make_machine(emu, "ecs-bad", {"Run": run_task_state(fx), **CAUGHT})
    result = emu.run_execution(machine, {})
    error = result.output["error"]
    assert error["Error"] == "States.TaskFailed"
    assert json.loads(error["Cause"])["Containers"][0]["ExitCode"] == 21


def test_a_task_whose_image_cannot_be_pulled_never_starts(emu: Emulator) -> None:
    fx = ecs_fixture(emu, "nopull", "print('never')", {}, image="registry.example/missing:1")
    machine = make_machine(emu, "ecs-nopull", {"Run": run_task_state(fx), **CAUGHT})
    result = emu.run_execution(machine, {})
    cause = json.loads(result.output["error"]["Cause"])
    assert result.output["error"]["Error"] == "States.TaskFailed"
    assert cause["StopCode"] == "TaskFailedToStart"
    assert cause["StoppedReason"].startswith("CannotPullContainerError")
    assert "ExitCode" not in cause["Containers"][0]
    assert emu.tasks.tasks[-1].process is None


def test_a_container_killed_by_sigkill_exits_137_and_its_log_reaches_cloudwatch(
    emu: Emulator,
) -> None:
    code = "import time; print('started', flush=True); time.sleep(120)"
    fx = ecs_fixture(emu, "killed", code, {}, log_group="/test/killed")
    machine = make_machine(emu, "ecs-killed", {"Run": run_task_state(fx), **CAUGHT})
    started = len(emu.tasks.tasks)

    def kill_when_running() -> None:
        task = emu.tasks.wait_for_start(started + 1)
        while "started" not in task.log():
            time.sleep(0.05)
        os.kill(task.pid, signal.SIGKILL)  # what the kernel's OOM killer does

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    result = emu.run_execution(machine, {})
    killer.join()
    cause = json.loads(result.output["error"]["Cause"])
    assert cause["Containers"][0]["ExitCode"] == 137
    task_id = cause["TaskArn"].rsplit("/", 1)[-1]
    events = emu.client("logs").get_log_events(
        logGroupName="/test/killed", logStreamName=f"task/main/{task_id}"
    )["events"]
    assert [e["message"] for e in events] == ["started"]


def test_a_timed_out_state_stops_its_task(emu: Emulator) -> None:
    fx = ecs_fixture(emu, "slow", "import time; time.sleep(120)", {})
    machine = make_machine(emu, "ecs-slow", {"Run": run_task_state(fx, timeout=2), **CAUGHT})
    result = emu.run_execution(machine, {}, timeout=60)
    assert result.output["error"]["Error"] == "States.Timeout"
    task = emu.tasks.tasks[-1]
    task.process.wait(timeout=30)  # stopped by the sync resolver, not left running
    assert task.exit_code is not None or task.process.returncode is not None


def test_container_argv_maps_the_image_entrypoint() -> None:
    assert ecs_runner.container_argv({}, ["backup"]) == [
        sys.executable,
        "-m",
        "pgautodumper",
        "backup",
    ]
    assert ecs_runner.container_argv({"entryPoint": ["/bin/true"], "command": ["x"]}, None) == [
        "/bin/true", "x",
    ]  # fmt: skip


# -- Step Functions API and MockConfigFile -------------------------------------------


def test_validate_and_list_versions_exist_over_http(emu: Emulator) -> None:
    sfn = emu.client("stepfunctions")
    ok = sfn.validate_state_machine_definition(
        definition=json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})
    )
    assert ok["result"] == "OK"
    bad = sfn.validate_state_machine_definition(definition='{"StartAt": "A", "States": {}}')
    assert bad["result"] == "FAIL" and bad["diagnostics"]
    machine = make_machine(emu, "versions", {"A": {"Type": "Succeed"}})
    assert sfn.list_state_machine_versions(stateMachineArn=machine)["stateMachineVersions"] == []


def test_mock_config_drives_a_test_case_then_runs_for_real(emu: Emulator) -> None:
    arn = make_function(emu, "echo-mock", "tests.state_machine.fake_handlers.echo")
    machine = make_machine(emu, "mocked", {
        "Call": {"Type": "Task", "Resource": arn, "TimeoutSeconds": 30,
                 "Retry": [{"ErrorEquals": ["Flaky"], "IntervalSeconds": 1, "MaxAttempts": 2}],
                 "End": True},
    })  # fmt: skip
    mock_config.load_mock_config({
        "StateMachines": {"mocked": {"TestCases": {"FlakyOnce": {"Call": "Flaky"}}}},
        "MockedResponses": {"Flaky": {"0": {"Throw": {"Error": "Flaky", "Cause": "drill"}}}},
    })  # fmt: skip
    try:
        result = emu.run_execution(machine, {"x": 1}, scenario="FlakyOnce")
        with pytest.raises(LocalRuntimeError, match="no test case"):
            mock_config.mock_test_case("mocked", "Nope")
    finally:
        mock_config.load_mock_config(None)
    assert result.status == "SUCCEEDED"
    assert result.output["event"] == {"x": 1}  # the retry ran the real handler
    assert [e["type"] for e in result.history].count("TaskFailed") == 1
