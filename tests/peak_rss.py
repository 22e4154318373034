"""Peak RSS of one `python ARGS` run, as the kernel accounts it."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from typing import Any

# The run is started by this small launcher, which reports os.wait4's ru_maxrss: a
# child forked straight from pytest would inherit pytest's own peak (Linux keeps the
# pre-exec memory's high-water mark in the process's maxrss).
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as report:
    report.write(f"{usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def measured(args: list[str], **run: Any) -> tuple[int, int, subprocess.CompletedProcess]:
    """(peak RSS in bytes, exit code, the launcher's run) of ``python ARGS``."""
    with tempfile.NamedTemporaryFile("r") as report:
        done = subprocess.run([sys.executable, "-c", LAUNCHER, report.name, *args], **run)
        maxrss_kib, code = map(int, report.read().split())
    return maxrss_kib * 1024, code, done
