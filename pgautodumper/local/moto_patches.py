"""The one place where the local runtime reaches into moto 5.2.5's internals.

moto runs the real state machine definition, but on its own it cannot run
this project's workflow (DESIGN.md, "The local runtime", lists the facts).
Each patch below closes one verified gap; :func:`apply` installs them all,
once, and is idempotent. Nothing outside this module touches moto privates.

Lambda
    ``Invoke`` (from the Step Functions engine and from the HTTP API alike)
    runs the function's configured ``Handler`` (``lambdas.preflight.handler``)
    in the local Lambda runtime (:mod:`lambda_runtime`: a process of its own
    per invocation, with the function's environment). A raised exception
    becomes the function error whose ``errorType`` is the exception's class
    name, so ``Retry``/``Catch`` match it.
ECS
    ``RunTask`` hands each task to the emulator's :class:`~ecs_runner.TaskRunner`
    (a local process per task). The ``.sync`` integration gets its
    parameter-name conversion from botocore's service model (moto's is an
    empty stub), fails the state with ``States.TaskFailed`` and the task JSON
    as cause when the container exits non-zero or never started, and stops
    the task when the state times out. Fargate containers without
    container-level memory and VPCs without DNS hostnames work.
Step Functions
    The HTTP API gains ``ValidateStateMachineDefinition`` and
    ``ListStateMachineVersions`` (the Terraform AWS provider calls both), the
    ASL engine is switched on, and ``StartExecution`` on ``<state machine
    ARN>#<TestCase>`` runs a test case of the loaded ``MockConfigFile``
    (:mod:`mock_config`), with one extension: a state whose mocked responses
    are exhausted runs its real integration. A Fail state's ``ErrorPath`` and
    a mocked ``Throw`` may name a ``States.*`` error, as in AWS.
"""

from __future__ import annotations

import json
import sys
import threading
from functools import cache
from typing import Any

from pgautodumper.local import ecs_runner, lambda_runtime, mock_config
from pgautodumper.local.lambda_runtime import FakeLambdaContext, LocalRuntimeError

_applied = False
_apply_lock = threading.Lock()
_engine_endpoint: str | None = None
_pending_mock = threading.local()


# -- Lambda -------------------------------------------------------------------


def _lambda_invoke(self: Any, body: str, request_headers: Any, response_headers: Any) -> bytes:
    event = json.loads(body) if body else {}
    context = FakeLambdaContext(
        function_name=self.function_name,
        invoked_function_arn=self.function_arn,
        memory_limit_in_mb=int(self.memory_size or 128),
        timeout_seconds=int(self.timeout or 3),
    )
    runtime = lambda_runtime.active
    if runtime is None:
        raise LocalRuntimeError("Lambda Invoke outside a running emulator", hint="start one first")
    payload, errored = runtime.invoke(self.handler, event, context, self.environment_vars or {})
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    return json.dumps(payload, default=str).encode("utf-8")


# -- ECS ------------------------------------------------------------------------


def _patch_ecs() -> None:
    from moto.ec2.models.elastic_network_interfaces import NetworkInterface
    from moto.ecs import models as ecs_models

    backend_cls = ecs_models.EC2ContainerServiceBackend
    original_run_task = backend_cls.run_task
    original_stop_task = backend_cls.stop_task
    original_requirements = backend_cls._calculate_task_resource_requirements
    original_last_status = ecs_models.Task.last_status

    def run_task(self: Any, cluster_str: str, task_definition_str: str, *args: Any, **kw: Any):
        runner = ecs_runner.active
        if runner is None:
            raise LocalRuntimeError(
                "ECS RunTask outside a running emulator", hint="start an Emulator first"
            )
        tasks = original_run_task(self, cluster_str, task_definition_str, *args, **kw)
        overrides = args[1] if len(args) > 1 else kw.get("overrides")
        task_definition = self.describe_task_definition(task_definition_str)
        for task in tasks:
            runner.start(task, task_definition, overrides)
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
            # Once more, all of it read after the stop: the answer that first said STOPPED
            # may have read the container's exit code (moto's default, 0) just before the
            # runner set it, and a failed task would pass as a success.
            described = ecs_client.describe_tasks(cluster=cluster_arn, tasks=[task_arn])
            described.pop("ResponseMetadata", None)
            self._normalise_response(described, service_action_name="describe_tasks")
            task = described["Tasks"][0]
            # AWS fails a .sync task whose essential container exited non-zero, or that
            # never ran (no exit code: image pull, ENI, secrets), with the task as cause.
            if any(c.get("ExitCode") != 0 for c in task.get("Containers", [])):
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
    """Step Functions Local's ``<ARN>#<TestCase>`` and the fall-through extension."""
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
            _pending_mock.case = mock_config.mock_test_case(machine.name, case)
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
