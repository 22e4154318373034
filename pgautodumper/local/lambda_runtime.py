"""The local Lambda runtime: each invocation in a process of its own, as in AWS.

A Lambda function runs in an execution environment of its own: its
environment variables are its process's, and nothing it does touches another
function. Here a forking server (``socketserver.ForkingMixIn`` on a Unix socket, in
a single-threaded child process that has already imported the heavy
libraries: boto3, pydantic, psycopg, powertools) forks once per invocation.
The forked child applies the function's environment to *its own*
``os.environ``, imports the handler, calls it with a
:class:`FakeLambdaContext`, and answers with the payload and what it printed
(its CloudWatch log; here the caller's stdout). No process-global state of
the emulator is mutated, whatever runs concurrently.

A raised exception becomes ``{"errorType": <class name>, "errorMessage": ...}``,
the payload AWS returns with ``FunctionError: Unhandled``, so Step Functions'
``Retry``/``Catch`` match the class name.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pgautodumper.errors import PgautodumperError

REPO = Path(__file__).resolve().parents[2]
# Imported once in the fork server; handler modules (lambdas.*) are not, since they
# read their environment at import time, as they would in a fresh Lambda environment.
PRELOAD = [
    "boto3",
    "botocore.session",
    "pydantic",
    "psycopg",
    "aws_lambda_powertools",
    "aws_lambda_powertools.metrics",
    "aws_xray_sdk.core",
    "pgautodumper.contract",
    "pgautodumper.notify",
    "pgautodumper.preflight",
    "pgautodumper.record",
    "pgautodumper.prune",
    "pgautodumper.outcome",
]


class LocalRuntimeError(PgautodumperError):
    """The local runtime could not emulate a service call."""

    next_step = "The local runtime (pgautodumper.local) could not emulate the call: see the cause."


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
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"
        self.log_stream_name = self.log_stream_name or f"local/{self.aws_request_id}"
        self._deadline = time.monotonic() + self.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))

    def fields(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not k.startswith("_")}


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


def _error_payload(exc: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_tb(exc.__traceback__)[-5:],
    }


def _call(request: dict[str, Any]) -> dict[str, Any]:
    """In the forked child: this process's environment is the function's own."""
    os.environ.update(request["environment"])
    with tempfile.TemporaryFile() as output:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(output.fileno(), 1)
        os.dup2(output.fileno(), 2)
        try:
            context = FakeLambdaContext(**request["context"])
            handler = resolve_handler(request["handler"])
            payload, errored = handler(request["event"], context), False
        except Exception as exc:
            payload, errored = _error_payload(exc), True
        sys.stdout.flush()
        sys.stderr.flush()
        output.seek(0)
        printed = output.read().decode(errors="replace")
    return {"payload": payload, "errored": errored, "printed": printed}


class _Invocation(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        response = _call(json.loads(self.rfile.read()))
        self.wfile.write(json.dumps(response, default=str).encode())


class _ForkingServer(socketserver.ForkingMixIn, socketserver.UnixStreamServer):
    """One forked child per connection (socketserver.ForkingUnixStreamServer from 3.12)."""


def serve(socket_path: str) -> None:
    """The server process: preload, then fork per invocation (``python -m`` this module)."""
    for module in PRELOAD:
        importlib.import_module(module)
    with _ForkingServer(socket_path, _Invocation) as server:
        print("ready", flush=True)
        server.serve_forever()


class LambdaRuntime:
    """The forking server, started once per emulator; ``invoke`` is thread-safe."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="pgad-lambda-")
        self.socket_path = os.path.join(self._dir, "runtime.sock")
        self._process: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()

    def start(self) -> LambdaRuntime:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "pgautodumper.local.lambda_runtime", self.socket_path],
            stdout=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        assert self._process.stdout is not None
        if self._process.stdout.readline().strip() != "ready":
            self.stop()
            raise LocalRuntimeError("the local Lambda runtime did not start")
        return self

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._process = None
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
            os.rmdir(self._dir)

    def invoke(
        self, handler: str, event: Any, context: FakeLambdaContext, environment: dict[str, str]
    ) -> tuple[Any, bool]:
        """Call a handler the way the Lambda runtime does: ``(payload, errored)``."""
        request = {
            "handler": handler,
            "event": event,
            "context": context.fields(),
            "environment": {
                # X-Ray has no daemon here; the rest of powertools runs as in AWS.
                "POWERTOOLS_TRACE_DISABLED": "true",
                "AWS_LAMBDA_FUNCTION_NAME": context.function_name,
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(context.memory_limit_in_mb),
                **{key: str(value) for key, value in environment.items()},
            },
        }
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(context.timeout_seconds)
            conn.connect(self.socket_path)
            conn.sendall(json.dumps(request, default=str).encode())
            conn.shutdown(socket.SHUT_WR)
            try:
                raw = b"".join(iter(lambda: conn.recv(65536), b""))
            except TimeoutError:
                return {
                    "errorType": "Sandbox.Timedout",
                    "errorMessage": f"Task timed out after {context.timeout_seconds:.2f} seconds",
                }, True
        if not raw:
            return {"errorType": "Runtime.ExitError", "errorMessage": "the handler died"}, True
        response = json.loads(raw)
        if response["printed"]:
            sys.stdout.write(response["printed"])
            sys.stdout.flush()
        return response["payload"], response["errored"]


# The runtime of the running emulator: moto's patched Lambda Invoke calls it.
active: LambdaRuntime | None = None


if __name__ == "__main__":
    serve(sys.argv[1])
