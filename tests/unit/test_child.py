"""A tool's failure message keeps its error line, however long the detail after it."""

from __future__ import annotations

import sys

from pgautodumper.child import STDERR_LINES, ToolProcess


def _failing(stderr_lines: list[str]) -> ToolProcess:
    script = "import sys; sys.stderr.write(sys.argv[1]); sys.exit(1)"
    process = ToolProcess([sys.executable, "-c", script, "\n".join(stderr_lines)], {})
    process.wait()
    return process


def test_an_error_line_followed_by_a_long_query_stays_in_the_message():
    query = [f"       column_{i}," for i in range(STDERR_LINES * 2)]
    lines = ["pg_dump: error: query failed: FATAL:  terminating connection due to administrator"
             " command", "pg_dump: detail: Query was: SELECT", *query]  # fmt: skip
    failure = _failing(lines).failure()

    assert "exited with code 1: pg_dump: error: query failed: FATAL:  terminating" in failure
    assert failure.endswith(query[-1])
    assert "column_0," not in failure  # the middle of the detail is left out


def test_a_short_stderr_is_whole_and_not_repeated():
    failure = _failing(["pg_restore: error: could not execute query", "ERROR:  x"]).failure()

    assert failure.endswith("code 1: pg_restore: error: could not execute query | ERROR:  x")
    assert failure.count("could not execute query") == 1


def test_a_tool_killed_by_sigkill_from_outside_suggests_memory_and_one_we_killed_does_not():
    suicide = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    outside = ToolProcess([sys.executable, "-c", suicide], {})
    outside.wait()
    ours = ToolProcess([sys.executable, "-c", "import time; time.sleep(60)"], {})
    ours.kill()

    assert "killed by SIGKILL (the out-of-memory killer?" in outside.failure()
    assert ours.failure().endswith("was killed by SIGKILL")
