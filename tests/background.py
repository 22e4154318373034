"""Tests marked ``background`` run in child pytest processes, one per module, alongside
the rest of the suite: long tests that mostly wait (Terraform polling the emulator,
a checkov install) or run single-threaded tools while the database tests keep the
server busy.

The parent deselects them (their fixtures are not set up twice), starts the children
once its PostgreSQL and moto server are up, and waits for them when its own tests are
done; their results end the terminal summary, and one failure fails the session. A
child shares the session's PostgreSQL (its backup role and password) and its moto
server; everything else (its emulators, buckets, databases) is its own, as in any test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHILD_ENV = "PGAUTODUMPER_TEST_BACKGROUND_CHILD"
MARKER = "background"
TIMEOUT_SECONDS = 900
CHILD_NICENESS = 5


def in_child() -> bool:
    return bool(os.environ.get(CHILD_ENV))


def child_of(item: Any) -> str:
    """The child that runs a background test: its module's, or a group's that modules
    share (``@pytest.mark.background(group=...)``) so that an expensive session fixture,
    such as one Terraform plan of 100 databases, is built once, not once per module."""
    marker = item.get_closest_marker(MARKER)
    return marker.kwargs.get("group") or item.nodeid.split("::", 1)[0]


@dataclass(eq=False)
class Child:
    """The background tests of one module or group: a ``pytest NODEID...`` process (its
    fixtures are built once) and its JUnit report."""

    module: str
    process: subprocess.Popen[bytes]
    folder: Path
    failures: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float | None = None  # the child's own run, as its report says

    @classmethod
    def start(cls, module: str, nodeids: list[str], root: Path, env: dict[str, str]) -> Child:
        folder = Path(tempfile.mkdtemp(prefix="pgad-background-"))
        with open(folder / "output.txt", "wb") as output:
            # The parent's tests are the longest path: the children, done in half its time,
            # yield the CPU to it (their waits are all bounded far above that).
            process = subprocess.Popen(
                ["nice", "-n", str(CHILD_NICENESS), sys.executable, "-m", "pytest", "-q",
                 "-rA", "-p", "no:cacheprovider", f"--junitxml={folder / 'report.xml'}",
                 *nodeids],
                cwd=root, env={**os.environ, **env, CHILD_ENV: "1"},
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return cls(module, process, folder)

    def finish(self) -> None:
        """Wait (bounded), then read every test's outcome from the report."""
        try:
            code = self.process.wait(timeout=TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        output = (self.folder / "output.txt").read_text(errors="replace")
        report = self.folder / "report.xml"
        root = ET.parse(report).getroot() if report.exists() else None
        cases = list(root.iter("testcase")) if root is not None else []
        suite = root if root is None or root.tag == "testsuite" else root.find("testsuite")
        self.seconds = float(suite.get("time", 0)) if suite is not None else None
        for case in cases:
            outcome = next((o for o in ("failure", "error", "skipped") if case.find(o)
                            is not None), "passed")  # fmt: skip
            self.counts[outcome] = self.counts.get(outcome, 0) + 1
            if outcome in ("failure", "error"):
                failed = case.find(outcome)
                assert failed is not None
                self.failures.append(f"{case.get('name')}: {failed.get('message', outcome)}\n"
                                     f"{(failed.text or '')[-6000:]}")  # fmt: skip
        if code != 0 and not self.failures:
            self.failures.append(f"the child pytest exited {code}:\n{output[-6000:]}")
        shutil.rmtree(self.folder, ignore_errors=True)

    def summary(self) -> str:
        counted = ", ".join(f"{n} {outcome}" for outcome, n in sorted(self.counts.items()))
        took = f" in {self.seconds:.0f}s" if self.seconds is not None else ""
        return f"{self.module}: {counted or 'no result'}{took}"


PENDING: dict[str, list[str]] = {}  # child -> node ids, deselected in the parent
CHILDREN: list[Child] = []
