"""Fixtures for the Terraform checks: offline terraform, a tmp copy of the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.terraform.terraform_support import (
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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("terraform timings")
        for label, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{label}: {seconds:.1f} s")
