"""ECS tasks as local processes: what Fargate would do with the task definition.

The emulator owns one :class:`TaskRunner` (``Emulator.tasks``); moto's
``RunTask`` hands it each task (see :mod:`moto_patches`). A task's essential
container becomes a subprocess running the image's entrypoint with the task
definition's environment plus the overrides; the task is RUNNING until it
exits, then STOPPED with the container's exit code as Docker reports it (a
process killed by signal N exits ``128 + N``: 137 for SIGKILL, the OOM
killer's signal). An image the local registry does not hold is never
started: the task stops with ``TaskFailedToStart`` and ECS's
``CannotPullContainerError`` reason, as Fargate's would. The container's
output goes where the ``awslogs`` driver would put it: the task definition's
log group, stream ``<prefix>/<container>/<task id>``, in the emulated
CloudWatch Logs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The task image's ENTRYPOINT (task_image/Dockerfile): a container definition
# without ``entryPoint`` runs ``pgautodumper <command>``.
IMAGE_ENTRYPOINT = ("pgautodumper",)
LOCAL_IMAGE = "pgautodumper-task:local"
STOP_GRACE_SECONDS = 10


@dataclass
class LocalTask:
    """A task's essential container, running as a local process (None: never started)."""

    task_id: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None
    log_path: Path
    exit_code: int | None = None
    stop_reason: str = ""
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def running(self) -> bool:
        return not self.done.is_set()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self, reason: str) -> None:
        """What ECS StopTask does: SIGTERM, then SIGKILL after the grace period."""
        self.stop_reason = self.stop_reason or reason
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.done.wait(timeout=STOP_GRACE_SECONDS + 5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


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


def docker_exit_code(returncode: int) -> int:
    """A process killed by signal N exits 128 + N in a container."""
    return 128 - returncode if returncode < 0 else returncode


LogSink = Callable[[dict[str, Any], str, str], None]


class TaskRunner:
    """Starts and tracks the tasks of one emulator."""

    def __init__(self, log_dir: Path, log_sink: LogSink | None = None) -> None:
        self.log_dir = log_dir
        self.images = {LOCAL_IMAGE}
        self.tasks: list[LocalTask] = []
        self._log_sink = log_sink
        # Called with the container's command just before a task starts: where failure
        # drills change the world between two states (a migration, a tampered object).
        self.on_start: Callable[[list[str]], None] | None = None

    def start(self, task: Any, task_definition: Any, overrides: dict[str, Any] | None) -> None:
        """Run ``task`` (a moto ECS Task) as a local process, or fail it to start."""
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
        log_path = self.log_dir / f"pgad-task-{task.id}.log"
        if container.get("image") not in self.images:
            local = LocalTask(task_id=task.id, argv=argv, process=None, log_path=log_path)
            self._never_started(task, local, container)
            return
        env = {**os.environ, **container_environment(container, override)}
        if self.on_start is not None:
            self.on_start(list(override.get("command") or container.get("command") or []))
        with log_path.open("wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        local = LocalTask(task_id=task.id, argv=argv, process=process, log_path=log_path)
        task._pgad_local = local
        self.tasks.append(local)

        def wait() -> None:
            code = docker_exit_code(process.wait())
            local.exit_code = code
            # Logs first, as the awslogs driver flushes before the task is STOPPED: once
            # the workflow sees it stopped, it may read (and link) them at once.
            self._ship_logs(container, task.id, local.log())
            self._stopped(
                task,
                local,
                exit_code=code,
                stop_code="EssentialContainerExited" if not local.stop_reason else "UserInitiated",
                reason=local.stop_reason or "Essential container in task exited",
            )
            local.done.set()

        threading.Thread(target=wait, name=f"pgad-task-{task.id}", daemon=True).start()

    def _never_started(self, task: Any, local: LocalTask, container: dict[str, Any]) -> None:
        task._pgad_local = local
        self.tasks.append(local)
        image = container.get("image")
        self._stopped(
            task,
            local,
            exit_code=None,
            stop_code="TaskFailedToStart",
            reason=(
                "CannotPullContainerError: pull image manifest has been retried 7 time(s): "
                f"failed to resolve ref {image}: {image}: not found"
            ),
        )
        local.done.set()

    @staticmethod
    def _stopped(
        task: Any, local: LocalTask, *, exit_code: int | None, stop_code: str, reason: str
    ) -> None:
        for moto_container in task.containers:
            moto_container.exitCode = exit_code
            moto_container.last_status = "STOPPED"
        task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        local.stop_reason = reason

    def _ship_logs(self, container: dict[str, Any], task_id: str, text: str) -> None:
        options = (container.get("logConfiguration") or {}).get("options") or {}
        if self._log_sink is None or not options.get("awslogs-group"):
            return
        stream = f"{options.get('awslogs-stream-prefix', 'ecs')}/{container.get('name')}/{task_id}"
        self._log_sink(options, stream, text)

    def stop_all(self) -> None:
        for task in self.tasks:
            task.stop("the local runtime shut down")

    def wait_for_start(self, count: int, timeout: float = 60.0) -> LocalTask:
        """The ``count``-th task (1-based) once its process exists (for drills)."""
        deadline = time.monotonic() + timeout
        while len(self.tasks) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"task {count} did not start within {timeout:.0f} s")
            time.sleep(0.05)
        return self.tasks[count - 1]


# The runner of the running emulator: moto's patched RunTask hands tasks to it.
active: TaskRunner | None = None
