"""Child processes (pg_dump, pg_restore) whose stderr we keep for error messages."""

from __future__ import annotations

import collections
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from typing import IO

STDERR_LINES = 20
# The first error lines stay in the message whatever follows them: pg_dump's "Query
# was:" detail can run longer than the tail.
PINNED_ERRORS = 3
_ERROR_LINE = re.compile(r"\berror:|\b(?:ERROR|FATAL|PANIC):")


class ToolProcess:
    """A running tool; its stderr tail is kept (redacted) for messages."""

    def __init__(
        self,
        argv: Sequence[str],
        env: dict[str, str],
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        secrets: Sequence[str] = (),
    ) -> None:
        self.name = argv[0].rsplit("/", 1)[-1]
        self._secrets = [s for s in secrets if s]
        self._tail: collections.deque[str] = collections.deque(maxlen=STDERR_LINES)
        self._errors: list[str] = []
        self._killed = False  # by us, on the way out of a failure found elsewhere
        self.process = subprocess.Popen(
            list(argv), env=env, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE
        )
        self._reader = threading.Thread(
            target=self._read_stderr, name=f"{self.name}-stderr", daemon=True
        )
        self._reader.start()

    @property
    def stdin(self) -> IO[bytes]:
        assert self.process.stdin is not None
        return self.process.stdin

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode(errors="replace").rstrip()
            for secret in self._secrets:
                line = line.replace(secret, "***")
            if line:
                self._tail.append(line)
                if len(self._errors) < PINNED_ERRORS and _ERROR_LINE.search(line):
                    self._errors.append(line)

    def wait(self) -> int:
        code = self.process.wait()
        self._reader.join(timeout=5)
        return code

    def kill(self) -> None:
        self.kill_now()
        self.wait()

    def kill_now(self) -> None:
        """SIGKILL, without waiting: another failure ends the work."""
        if self.process.poll() is None:
            self._killed = True
            self.process.kill()

    def stderr_tail(self) -> str:
        """The first error lines, then the last lines (without repeating them)."""
        tail = list(self._tail)
        scrolled_out = [line for line in self._errors if line not in tail]
        return " | ".join([*scrolled_out, "...", *tail] if scrolled_out else tail)

    def failure(self) -> str:
        """'pg_dump exited with code 1: <last stderr lines>' for messages."""
        code = self.process.returncode
        if code is not None and code < 0:
            what = f"{self.name} was killed by {signal.Signals(-code).name}"
            if -code == signal.SIGKILL and not self._killed:
                what += " (the out-of-memory killer? the machine's or task's memory ran out)"
        else:
            what = f"{self.name} exited with code {code}"
        tail = self.stderr_tail()
        return f"{what}: {tail}" if tail else what
