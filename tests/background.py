"""Tests marked ``background`` run in a child pytest, started when the session sets up;
the parent's item then only waits for that child and takes its outcome.

For a long test that mostly waits: the emulated smoke test spends two minutes in the
AWS provider's polling, time the rest of the suite can use. The child shares the
session's PostgreSQL (its backup role and password) and its moto server; everything
else (its emulator, buckets, databases) is its own, as in any test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

CHILD_ENV = "PGAUTODUMPER_TEST_BACKGROUND_CHILD"
MARKER = "background"


def in_child() -> bool:
    return bool(os.environ.get(CHILD_ENV))


@dataclass
class Child:
    """One background test: a ``pytest NODEID`` process and its JUnit report."""

    nodeid: str
    process: subprocess.Popen[bytes]
    folder: Path

    @classmethod
    def start(cls, nodeid: str, root: Path, env: dict[str, str]) -> Child:
        folder = Path(tempfile.mkdtemp(prefix="pgad-background-"))
        with open(folder / "output.txt", "wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider",
                 f"--junitxml={folder / 'report.xml'}", nodeid],
                cwd=root, env={**os.environ, **env, CHILD_ENV: "1"},
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        return cls(nodeid, process, folder)

    def wait(self) -> None:
        """Wait for the child (pytest-timeout bounds the parent's item); pass, skip or fail
        as it did."""
        code = self.process.wait()
        output = (self.folder / "output.txt").read_text(errors="replace")
        case = self._case()
        if case is not None and case.find("skipped") is not None:
            pytest.skip(case.find("skipped").get("message", "skipped in the background run"))
        if code != 0 or case is None:
            pytest.fail(f"background run (exit {code}):\n{output[-8000:]}", pytrace=False)

    def _case(self) -> ET.Element | None:
        report = self.folder / "report.xml"
        return ET.parse(report).getroot().find(".//testcase") if report.exists() else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


CHILDREN: dict[str, Child] = {}
