"""The one place where the local runtime reaches into moto 5.2.5's internals.

moto runs the real state machine definition, but on its own it cannot run
this project's workflow (DESIGN.md, "The local runtime", lists the facts).
Each patch below closes one verified gap; :func:`apply` installs them all,
once, and is idempotent. Nothing outside this module touches moto privates.

Lambda
    ``Invoke`` (from the Step Functions engine and from the HTTP API alike)
    imports the function's configured ``Handler`` string
    (``lambdas.preflight.handler``) and calls it in-process with the
    function's environment variables applied for the call and a fake
    ``LambdaContext``. A raised exception becomes the function error whose
    ``errorType`` is the exception's class name, so ``Retry``/``Catch`` match it.
ECS
    ``RunTask`` starts the task's entrypoint as a local subprocess with the
    task definition's container environment plus the overrides; the task is
    RUNNING until it exits, then STOPPED with the container's exit code.
    The ``.sync`` integration gets its parameter-name conversion from
    botocore's service model (moto's is an empty stub), fails the state with
    ``States.TaskFailed`` and the task JSON as cause when the container exits
    non-zero, and stops the task when the state times out. Fargate containers
    without container-level memory and VPCs without DNS hostnames work.
Step Functions
    The HTTP API gains ``ValidateStateMachineDefinition`` and
    ``ListStateMachineVersions`` (the Terraform AWS provider calls both), the
    ASL engine is switched on, and Step Functions Local's ``MockConfigFile``
    format is loaded: ``StartExecution`` on ``<state machine ARN>#<TestCase>``
    runs that test case. One extension: a state whose mocked responses are
    exhausted (retry number beyond the last range) runs its real integration,
    so "fail once, then really succeed" drills work. A Fail state's
    ``ErrorPath`` and a mocked ``Throw`` may name a ``States.*`` error, as in AWS.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pgautodumper.errors import PgautodumperError

# The task image's ENTRYPOINT (task_image/Dockerfile): a container definition
# without ``entryPoint`` runs ``pgautodumper <command>``.
IMAGE_ENTRYPOINT = ("pgautodumper",)
STOP_GRACE_SECONDS = 10
REPO = Path(__file__).resolve().parents[2]

_applied = False
_apply_lock = threading.Lock()
# Handlers share the process environment: one invocation at a time.
_invoke_lock = threading.RLock()
_mock_config: dict[str, Any] | None = None
_engine_endpoint: str | None = None
_pending_mock = threading.local()


class LocalRuntimeError(PgautodumperError):
    """The local runtime could not emulate a service call."""


# -- Lambda -------------------------------------------------------------------


@dataclass
class FakeLambdaContext:
    """The attributes powertools and handlers read from a ``LambdaContext``."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 128
    timeout_seconds: int = 3
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = ""
    log_stream_name: str = ""
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def resolve_handler(handler: str) -> Any:
    """``"lambdas.preflight.handler"`` → the callable, imported in this process."""
    if str(REPO) not in sys.path:
        # The handlers live in the repository's lambdas/ package, beside this one.
        sys.path.insert(0, str(REPO))
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise LocalRuntimeError(
            f"lambda handler {handler!r} is not of the form 'module.function'",
            hint="set the function's Handler to e.g. 'lambdas.preflight.handler'",
        )
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as exc:
        raise LocalRuntimeError(
            f"lambda handler {handler!r} cannot be imported: {exc}",
            hint="run from the repository root, or install the package",
        ) from exc


@contextmanager
def _environment(variables: dict[str, str]):
    saved = {key: os.environ.get(key) for key in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def invoke_handler(
    handler: str, event: Any, context: FakeLambdaContext, environment: dict[str, str]
) -> tuple[Any, bool]:
    """Call a handler the way the Lambda runtime does: ``(payload, errored)``.

    An exception becomes ``{"errorType": <class name>, "errorMessage": ...}``,
    the payload AWS returns with ``FunctionError: Unhandled``.
    """
    variables = {
        # X-Ray has no daemon here; the rest of powertools runs as in AWS.
        "POWERTOOLS_TRACE_DISABLED": "true",
        "AWS_LAMBDA_FUNCTION_NAME": context.function_name,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(context.memory_limit_in_mb),
        **{key: str(value) for key, value in environment.items()},
    }
    with _invoke_lock, _environment(variables):
        try:
            return resolve_handler(handler)(event, context), False
        except Exception as exc:
            return {
                "errorType": type(exc).__name__,
                "errorMessage": str(exc),
                "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
            }, True


def _lambda_invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
    event = json.loads(body) if body else {}
    context = FakeLambdaContext(
        function_name=self.function_name,
        invoked_function_arn=self.function_arn,
        memory_limit_in_mb=int(self.memory_size or 128),
        timeout_seconds=int(self.timeout or 3),
    )
    payload, errored = invoke_handler(self.handler, event, context, self.environment_vars or {})
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    return json.dumps(payload, default=str).encode("utf-8")


# -- ECS ------------------------------------------------------------------------


@dataclass
class LocalTask:
    """A task's essential container, running as a local process."""

    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    exit_code: int | None = None
    stop_reason: str = ""

    @property
    def running(self) -> bool:
        return self.exit_code is None

    def stop(self, reason: str) -> None:
        self.stop_reason = self.stop_reason or reason
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


_local_tasks: list[LocalTask] = []
task_log_dir = Path(tempfile.gettempdir())


def local_tasks() -> list[LocalTask]:
    return list(_local_tasks)


def stop_all_tasks() -> None:
    """Stop every task still running (the emulator calls this on exit)."""
    for task in _local_tasks:
        task.stop("the local runtime shut down")


def container_argv(container: dict[str, Any], command_override: list[str] | None) -> list[str]:
    entry = list(container.get("entryPoint") or IMAGE_ENTRYPOINT)
    command = list(
        command_override if command_override is not None else container.get("command") or []
    )
    argv = entry + command
    if argv and argv[0] == "pgautodumper":
        # The image's console script, run with this interpreter.
        argv = [sys.executable, "-m", "pgautodumper", *argv[1:]]
    return argv


def container_environment(container: dict[str, Any], override: dict[str, Any]) -> dict[str, str]:
    """The task definition's environment, then the overrides (they win, as in ECS)."""
    merged = {item["name"]: item["value"] for item in container.get("environment") or []}
    merged.update({item["name"]: item["value"] for item in override.get("environment") or []})
    return merged


def _start_local_task(task: Any, task_definition: Any, overrides: dict[str, Any] | None) -> None:
    container = task_definition.container_definitions[0]
    override = next(
        (
            item
            for item in (overrides or {}).get("containerOverrides") or []
            if item.get("name") in (None, container.get("name"))
        ),
        {},
    )
    argv = container_argv(container, override.get("command"))
    env = {**os.environ, **container_environment(container, override)}
    log_path = task_log_dir / f"pgad-task-{task.id}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    local = LocalTask(argv=argv, process=process, log_path=log_path)
    task._pgad_local = local
    _local_tasks.append(local)

    def wait() -> None:
        code = process.wait()
        for moto_container in task.containers:
            moto_container.exitCode = code
            moto_container.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stopped_reason = local.stop_reason or "Essential container in task exited"
        local.exit_code = code

    threading.Thread(target=wait, name=f"pgad-task-{task.id}", daemon=True).start()


def _patch_ecs() -> None:
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs import models as ecs_models

    backend_cls = ecs_models.EC2ContainerServiceBackend
    original_run_task = backend_cls.run_task
    original_stop_task = backend_cls.stop_task
    original_requirements = backend_cls._calculate_task_resource_requirements
    original_last_status = ecs_models.Task.last_status

    def run_task(self: Any, cluster_str: str, task_definition_str: str, *args: Any, **kw: Any):
        tasks = original_run_task(self, cluster_str, task_definition_str, *args, **kw)
        overrides = args[1] if len(args) > 1 else kw.get("overrides")
        task_definition = self.describe_task_definition(task_definition_str)
        for task in tasks:
            _start_local_task(task, task_definition, overrides)
        return tasks

    def stop_task(self: Any, cluster_str: str, task_str: str, reason: str) -> Any:
        task = original_stop_task(self, cluster_str, task_str, reason)
        local = getattr(task, "_pgad_local", None)
        if local is not None:
            local.stop(reason or "Task stopped by user")
        return task

    def calculate_requirements(task_definition: Any) -> dict[str, Any]:
        # Fargate puts memory on the task, not the container: moto adds None.
        patched = [
            {**cd, "memory": cd.get("memory") or cd.get("memoryReservation") or 0}
            for cd in task_definition.container_definitions
        ]
        saved = task_definition.container_definitions
        task_definition.container_definitions = patched
        try:
            return original_requirements(task_definition)
        finally:
            task_definition.container_definitions = saved

    def last_status(self: Any) -> str:
        local = getattr(self, "_pgad_local", None)
        if local is None:
            return original_last_status.fget(self)
        return "RUNNING" if local.running else "STOPPED"

    backend_cls.run_task = run_task
    backend_cls.stop_task = stop_task
    backend_cls._calculate_task_resource_requirements = staticmethod(calculate_requirements)
    ecs_models.Task.last_status = property(last_status, original_last_status.fset)
    # An ENI in a VPC without DNS hostnames has no private DNS name; ECS reads it.
    if not hasattr(NetworkInterface, "private_dns_name"):
        NetworkInterface.private_dns_name = None


@cache
def _operation_model(service: str, action: str) -> Any:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    return model.operation_model(action[0].upper() + action[1:])


def _task_failed(env: Any, service_task: Any, error: str, cause: str) -> Exception:
    from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
            event_type=HistoryEventType.TaskFailed,
            event_details=EventDetails(
                taskFailedEventDetails=TaskFailedEventDetails(
                    error=error,
                    cause=cause,
                    resource=service_task._get_sfn_resource(),
                    resourceType=service_task._get_sfn_resource_type(),
                )
            ),
        )
    )


def _patch_sfn_ecs_integration() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_ecs as ecs_module,
    )
    from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

    cls = ecs_module.StateTaskServiceEcs

    def normalise_parameters(self, parameters, boto_service_name=None, service_action_name=None):
        action = service_action_name or self.resource.api_action
        self._to_boto_request(parameters, _operation_model("ecs", action).input_shape)

    def normalise_response(self, response, boto_service_name=None, service_action_name=None):
        action = service_action_name or self.resource.api_action
        if service_action_name is not None:
            action = "".join(part.capitalize() for part in action.split("_"))
        self._from_boto_response(response, _operation_model("ecs", action).output_shape)

    def build_sync_resolver(
        self, env, resource_runtime_part, normalised_parameters, state_credentials
    ):
        ecs_client = ecs_module.boto_client_for(
            service="ecs", region=resource_runtime_part.region, state_credentials=state_credentials
        )
        submission = env.stack.pop()
        task_arn = submission["Tasks"][0]["TaskArn"]
        cluster_arn = submission["Tasks"][0]["ClusterArn"]
        self.timeout.eval(env=env)
        timeout_seconds = env.stack.pop()

        def stop_on_timeout() -> None:
            # The state has timed out (States.Timeout): stop the task, as AWS does.
            # A timer, because the engine stops polling once the execution moves on.
            ecs_client.stop_task(
                cluster=cluster_arn, task=task_arn, reason="Step Functions state timed out"
            )

        watchdog = threading.Timer(timeout_seconds, stop_on_timeout)
        watchdog.daemon = True
        watchdog.start()

        def resolve() -> dict | None:
            described = ecs_client.describe_tasks(cluster=cluster_arn, tasks=[task_arn])
            if described["tasks"][0]["lastStatus"] != "STOPPED":
                return None
            watchdog.cancel()
            described.pop("ResponseMetadata", None)
            self._normalise_response(described, service_action_name="describe_tasks")
            task = described["Tasks"][0]
            if any(c.get("ExitCode") not in (0, None) for c in task.get("Containers", [])):
                raise _task_failed(env, self, "States.TaskFailed", to_json_str(task))
            return task

        return resolve

    cls._normalise_parameters = normalise_parameters
    cls._normalise_response = normalise_response
    cls._build_sync_resolver = build_sync_resolver


# -- Step Functions --------------------------------------------------------------


def _patch_sfn_api() -> None:
    from moto.core.config import default_user_config
    from moto.core.responses import ActionResult
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.responses import StepFunctionResponse

    default_user_config.setdefault("stepfunctions", {})["execute_state_machine"] = True

    def validate_state_machine_definition(self: Any) -> ActionResult:
        diagnostics = []
        try:
            AmazonStateLanguageParser.parse(self._get_param("definition"))
        except Exception as exc:
            diagnostics.append(
                {
                    "severity": "ERROR",
                    "code": "SCHEMA_VALIDATION_FAILED",
                    "message": f"{type(exc).__name__}: {exc}"[:1000],
                }
            )
        return ActionResult(
            {
                "result": "FAIL" if diagnostics else "OK",
                "diagnostics": diagnostics,
                "truncated": False,
            }
        )

    def list_state_machine_versions(self: Any) -> ActionResult:
        machine = self.stepfunction_backend.describe_state_machine(
            self._get_param("stateMachineArn")
        )
        versions = sorted(machine.versions.values(), key=lambda v: v.version, reverse=True)
        return ActionResult(
            {
                "stateMachineVersions": [
                    {"stateMachineVersionArn": v.arn, "creationDate": v.creation_date}
                    for v in versions
                ]
            }
        )

    StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
    StepFunctionResponse.list_state_machine_versions = list_state_machine_versions


def set_engine_endpoint(endpoint: str | None) -> None:
    """Where the Step Functions engine sends its service calls (the in-process server)."""
    global _engine_endpoint
    _engine_endpoint = endpoint


def _patch_boto_client_for() -> None:
    """The engine's clients reach this process's server, not ``localhost:5000``."""
    from moto.stepfunctions.parser.asl.utils import boto_client

    original = boto_client.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        endpoint = _engine_endpoint
        if not endpoint:
            return original(region, service, state_credentials)
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(parameter_validation=False, retries={"total_max_attempts": 1},
                          read_timeout=900),
        )  # fmt: skip

    for name, module in list(sys.modules.items()):
        if name.startswith("moto.stepfunctions.parser") and hasattr(module, "boto_client_for"):
            module.boto_client_for = boto_client_for


# -- MockConfigFile ----------------------------------------------------------------


def load_mock_config(source: Path | dict[str, Any] | None) -> None:
    """Load a Step Functions Local ``MockConfigFile`` (path or parsed JSON); None unloads."""
    global _mock_config
    if source is None or isinstance(source, dict):
        _mock_config = source
    else:
        _mock_config = json.loads(Path(source).read_text())


def mock_test_case(state_machine_name: str, test_case: str) -> Any:
    """Build moto's ``MockTestCase`` from the loaded file (Step Functions Local semantics)."""
    from moto.stepfunctions.parser.mocking import mock_config as mc

    config = _mock_config or {}
    cases = config.get("StateMachines", {}).get(state_machine_name, {}).get("TestCases", {})
    if test_case not in cases:
        raise LocalRuntimeError(
            f"no test case {test_case!r} for state machine {state_machine_name!r} "
            "in the loaded MockConfigFile",
            hint=f"known test cases: {', '.join(sorted(cases)) or 'none'}",
        )
    states = []
    for state_name, response_name in cases[test_case].items():
        raw = config.get("MockedResponses", {}).get(response_name)
        if not raw:
            raise LocalRuntimeError(f"MockConfigFile has no MockedResponses {response_name!r}")
        responses = []
        for numbers, body in raw.items():
            start, _, end = numbers.partition("-")
            first, last = int(start), int(end or start)
            if "Return" in body:
                responses.append(mc.MockedResponseReturn(first, last, body["Return"]))
            else:
                throw = body.get("Throw", {})
                responses.append(
                    mc.MockedResponseThrow(
                        first, last, throw.get("Error", ""), throw.get("Cause", "")
                    )
                )
        states.append(mc.StateMockedResponses(state_name, response_name, responses))
    return mc.MockTestCase(state_machine_name, test_case, states)


def _patch_error_names() -> None:
    """Let a Fail state's ``ErrorPath`` and a mocked ``Throw`` name a ``States.*`` error.

    AWS accepts both (re-raising ``$.error.Error`` after a Catch is common);
    moto's engine turns them into ``States.Runtime``.
    """
    from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
        CustomErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName

    def init(self: Any, error_name: str | None) -> None:
        ErrorName.__init__(self, error_name=error_name)

    CustomErrorName.__init__ = init


def _patch_mocking() -> None:
    from moto.stepfunctions.parser.asl.eval.environment import Environment
    from moto.stepfunctions.parser.backend import execution as execution_module
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original_start = StepFunctionsParserBackend.start_execution
    original_worker = execution_module.Execution._get_start_execution_worker

    def start_execution(self: Any, state_machine_arn: str, *args: Any, **kw: Any) -> Any:
        arn, _, case = state_machine_arn.partition("#")
        _pending_mock.case = None
        if case:
            machine = self.describe_state_machine(arn)
            _pending_mock.case = mock_test_case(machine.name, case)
        try:
            return original_start(self, arn, *args, **kw)
        finally:
            _pending_mock.case = None

    def get_worker(self: Any) -> Any:
        worker = original_worker(self)
        case = getattr(_pending_mock, "case", None)
        if case is not None:
            worker._mock_test_case = case
        return worker

    def is_mocked_mode(self: Any) -> bool:
        case = self.mock_test_case
        if case is None or self.next_state_name not in case.state_mocked_responses:
            return False
        retry = self.states.context_object.context_object_data.get("State", {}).get("RetryCount", 0)
        # Extension: past its last mocked response, a state runs for real.
        return retry < len(case.state_mocked_responses[self.next_state_name].mocked_responses)

    StepFunctionsParserBackend.start_execution = start_execution
    execution_module.Execution._get_start_execution_worker = get_worker
    Environment.is_mocked_mode = is_mocked_mode


# -- install -------------------------------------------------------------------------


def apply() -> None:
    """Install every patch (idempotent)."""
    global _applied
    with _apply_lock:
        if _applied:
            return
        # Import the engine's modules first so their bound names can be swapped.
        import moto.stepfunctions.parser.models  # noqa: F401
        from moto.awslambda.models import LambdaFunction
        from moto.stepfunctions.parser.asl.component.state.exec.state_task import (  # noqa: F401
            lambda_eval_utils,
        )
        from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (  # noqa: F401
            state_task_service_ecs,
            state_task_service_lambda,
            state_task_service_sns,
        )

        LambdaFunction.invoke = _lambda_invoke
        _patch_ecs()
        _patch_sfn_ecs_integration()
        _patch_sfn_api()
        _patch_boto_client_for()
        _patch_mocking()
        _patch_error_names()
        _applied = True
