"""Fixtures for the Terraform checks: offline terraform, a tmp copy of the module."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.terraform_support import (
    REPO,
    TIMINGS,
    Terraform,
    copy_module,
    missing_terraform,
    skip_loudly,
    write_cli_config,
)


@pytest.fixture(scope="session")
def terraform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Terraform]:
    reason = missing_terraform()
    if reason:
        skip_loudly(reason)
    yield Terraform(cli_config=write_cli_config(tmp_path_factory.mktemp("tfrc")))


@pytest.fixture(scope="session")
def module_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """terraform/ (and state_machine/) copied, so init never touches the checkout."""
    return copy_module(tmp_path_factory.mktemp("tfmodule"))


@pytest.fixture(scope="session")
def scale_plan(terraform: Terraform, module_copy: Path, moto_server: str) -> dict[str, Any]:
    """``terraform show -json`` of tests/terraform/scale: the module planned (never applied)
    with 100 databases, a vault verify schedule and every optional grant. One plan for
    the session: the scale, dashboard and policy checks all read it."""
    directory = module_copy.parent / "tests" / "terraform" / "scale"
    shutil.copytree(REPO / "tests" / "terraform" / "scale", directory)
    with zipfile.ZipFile(directory / "dummy.zip", "w") as archive:
        archive.writestr("lambdas/__init__.py", "")
    init = terraform.run("init", "-backend=false", cwd=directory, label="init scale")
    assert init.returncode == 0, init.stderr
    plan = terraform.run(
        "plan", "-refresh=false", "-parallelism=20", "-out=plan.bin",
        f"-var=moto_endpoint={moto_server}", cwd=directory, label="plan 100 databases",
        timeout=600,
    )  # fmt: skip
    assert plan.returncode == 0, f"{plan.stdout[-4000:]}{plan.stderr[-4000:]}"
    shown = terraform.run("show", "-json", "plan.bin", cwd=directory, label="show plan")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("terraform timings")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
