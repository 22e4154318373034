"""The emulated AWS account: moto's server in this process, with the patches applied.

One backend serves everything: Terraform applying over HTTP, the resources
:mod:`pgautodumper.local.resources` provisions, the Step Functions engine's
own calls, the in-process Lambda handlers and the dump task subprocesses
(which inherit ``AWS_ENDPOINT_URL``).

    with Emulator() as emu:
        emu.endpoint                       # http://127.0.0.1:PORT
        result = emu.run_execution(state_machine_arn, request, on_event=print)
        result.status, result.output, result.visited, result.history
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from pgautodumper import aws
from pgautodumper.errors import PgautodumperError
from pgautodumper.local import ecs_runner, lambda_runtime, moto_patches
from pgautodumper.local.ecs_runner import TaskRunner
from pgautodumper.local.lambda_runtime import LambdaRuntime
from pgautodumper.scratch import free_port

REGION = "us-east-1"
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}
_TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


@dataclass
class Transition:
    """One line of the live stream: a state entered or left, or the execution ending."""

    timestamp: float
    kind: str  # "entered", "exited", "failed", "retry" or the execution event type
    state: str | None
    detail: str = ""


@dataclass
class ExecutionResult:
    execution_arn: str
    status: str
    output: dict[str, Any] | None
    error: str | None
    cause: str | None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def visited(self) -> list[str]:
        """States entered, in order (a retried state appears once per entry)."""
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history
            if e["type"].endswith("StateEntered")
        ]


def _describe(event: dict[str, Any]) -> Transition | None:
    kind = event["type"]
    stamp = event["timestamp"].timestamp() if hasattr(event["timestamp"], "timestamp") else 0.0
    if kind.endswith("StateEntered"):
        return Transition(stamp, "entered", event["stateEnteredEventDetails"]["name"])
    if kind.endswith("StateExited"):
        return Transition(stamp, "exited", event["stateExitedEventDetails"]["name"])
    for key, details in event.items():
        if key.endswith("FailedEventDetails") or key.endswith("TimedOutEventDetails"):
            return Transition(stamp, "failed", None, details.get("error", ""))
    if kind.startswith("Execution"):
        return Transition(stamp, kind, None)
    return None


class Emulator:
    """moto's ThreadedMotoServer, in-process, with :mod:`moto_patches` applied.

    It owns the ECS :class:`TaskRunner` (``tasks``): the local processes its
    RunTask calls started, their logs shipped to its CloudWatch Logs.
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._saved_env: dict[str, str | None] = {}
        self._workdir: Path | None = None  # task logs, removed on stop
        self.tasks: TaskRunner | None = None
        self.lambdas: LambdaRuntime | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> Emulator:
        from moto.server import ThreadedMotoServer

        moto_patches.apply()
        self._workdir = Path(tempfile.mkdtemp(prefix="pgad-emulator-"))
        self.tasks = TaskRunner(self._workdir, log_sink=self._ship_task_log)
        ecs_runner.active = self.tasks
        # werkzeug logs every request of every client: noise in a live stream.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        moto_patches.set_engine_endpoint(self.endpoint)
        values = {**_ENV, "AWS_ENDPOINT_URL": self.endpoint}
        self._saved_env = {key: os.environ.get(key) for key in values}
        os.environ.update(values)
        aws.reset()
        # Started after the environment names the endpoint: its functions inherit it.
        self.lambdas = LambdaRuntime().start()
        lambda_runtime.active = self.lambdas
        return self

    def stop(self) -> None:
        if self.tasks is not None:
            self.tasks.stop_all()
        ecs_runner.active = None
        if self.lambdas is not None:
            self.lambdas.stop()
            self.lambdas = None
        lambda_runtime.active = None
        if self._server is not None:
            self._server.stop()
            self._server = None
        moto_patches.set_engine_endpoint(None)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        aws.reset()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Forget every emulated resource (moto's reset), keeping the server and patches."""
        import urllib.request

        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=30).close()

    def _ship_task_log(self, options: dict[str, Any], stream: str, text: str) -> None:
        """What the awslogs driver does with a container's output (stream created as needed)."""
        logs = self.client("logs")
        group = options["awslogs-group"]
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(time.time() * 1000)
        events = [{"timestamp": now, "message": line} for line in text.splitlines() if line]
        if events:
            logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    # -- executions ------------------------------------------------------------

    def run_execution(
        self,
        state_machine_arn: str,
        execution_input: dict[str, Any] | str,
        *,
        name: str | None = None,
        scenario: str | None = None,
        on_event: Callable[[Transition], None] | None = None,
        timeout: float = 900.0,
        poll_seconds: float = 0.2,
    ) -> ExecutionResult:
        """Start an execution (``scenario``: a MockConfigFile test case), stream it, wait."""
        sfn = self.client("stepfunctions")
        body = execution_input if isinstance(execution_input, str) else json.dumps(execution_input)
        arn = f"{state_machine_arn}#{scenario}" if scenario else state_machine_arn
        started = sfn.start_execution(
            stateMachineArn=arn, name=name or f"local-{uuid.uuid4().hex[:12]}", input=body
        )
        execution_arn = started["executionArn"]
        seen = 0
        deadline = time.monotonic() + timeout
        while True:
            described = sfn.describe_execution(executionArn=execution_arn)
            history = self.history(execution_arn)
            for event in history[seen:]:
                transition = _describe(event)
                if on_event and transition:
                    on_event(transition)
            seen = len(history)
            if described["status"] in _TERMINAL:
                break
            if time.monotonic() > deadline:
                sfn.stop_execution(executionArn=execution_arn, error="LocalTimeout")
                raise PgautodumperError(
                    f"execution {execution_arn} still running after {timeout:.0f} s",
                    hint="see the streamed transitions for the state it is stuck in",
                )
            time.sleep(poll_seconds)
        output = described.get("output")
        return ExecutionResult(
            execution_arn=execution_arn,
            status=described["status"],
            output=json.loads(output) if output else None,
            error=described.get("error"),
            cause=described.get("cause"),
            history=self.history(execution_arn),
        )

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        sfn = self.client("stepfunctions")
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            kwargs["nextToken"] = page["nextToken"]
