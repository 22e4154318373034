"""`pgautodumper --help` and `--version` start without the heavy libraries; every verb loads."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgautodumper.cli import COMMANDS, cli

REPO = Path(__file__).resolve().parents[2]
HEAVY = {"boto3", "botocore", "psycopg", "pydantic", "zstandard"}

LOADED_BY = """
import json, runpy, sys
sys.argv = ["pgautodumper", *json.loads(sys.argv[1])]
try:
    runpy.run_module("pgautodumper", run_name="__main__")
except SystemExit:
    pass
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})), file=sys.stderr)
"""


def loaded_by(*args: str) -> set[str]:
    """The top-level modules a fresh interpreter holds after `pgautodumper ARGS`."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_BY, json.dumps(args)],
        capture_output=True, text=True, check=True, cwd=REPO,
    )  # fmt: skip
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize("args", [["--version"], ["--help"], []])
def test_help_and_version_import_no_heavy_library(args: list[str]) -> None:
    assert not loaded_by(*args) & HEAVY


def test_a_verb_loads_its_libraries() -> None:
    """The check above can fail: running a verb's help does import them."""
    assert {"boto3", "psycopg"} <= loaded_by("backup", "--help")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_verb_loads_and_its_summary_is_its_docstring(name: str) -> None:
    module = importlib.import_module(f"pgautodumper.cli.{name.replace('-', '_')}")
    assert module.command.name == name
    assert (module.command.help or "").splitlines()[0] == COMMANDS[name]
    assert cli.get_command(None, name) is module.command  # type: ignore[arg-type]
