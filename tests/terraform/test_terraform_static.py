"""The module is formatted, every example validates offline, checkov finds nothing.

Each test needs terraform and the offline provider mirror (or, for checkov, its
own venv); without them it skips with a loud ``SKIPPED:`` line instead of failing.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.terraform.terraform_support import CHECKOV, MODULE, Terraform, skip_loudly

# terraform init and validate of every example: alongside the database tests.
pytestmark = [pytest.mark.terraform, pytest.mark.background]

EXAMPLES = sorted(path.name for path in (MODULE / "examples").iterdir() if path.is_dir())


def test_examples_exist() -> None:
    assert {"complete", "local", "smoke", "vault"} <= set(EXAMPLES)


def test_fmt_check_recursive(terraform: Terraform, module_copy: Path) -> None:
    result = terraform.run("fmt", "-check", "-recursive", "-diff", cwd=module_copy, label="fmt")
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"


@pytest.mark.parametrize("example", EXAMPLES)
def test_example_inits_offline_and_validates(
    terraform: Terraform, module_copy: Path, example: str
) -> None:
    directory = module_copy / "examples" / example
    init = terraform.run("init", "-backend=false", cwd=directory, label=f"init {example}")
    assert init.returncode == 0, f"terraform init failed:\n{init.stdout}{init.stderr}"
    validate = terraform.run("validate", cwd=directory, label=f"validate {example}")
    assert validate.returncode == 0, (
        f"terraform validate failed:\n{validate.stdout}{validate.stderr}"
    )


def test_module_itself_validates(terraform: Terraform, module_copy: Path) -> None:
    init = terraform.run("init", "-backend=false", cwd=module_copy, label="init module")
    assert init.returncode == 0, init.stderr
    validate = terraform.run("validate", cwd=module_copy, label="validate module")
    assert validate.returncode == 0, f"{validate.stdout}{validate.stderr}"


def _checkov_report(target: Path) -> dict:
    try:
        result = subprocess.run(
            [str(CHECKOV), "-d", str(target), "--framework", "terraform", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        skip_loudly(f"checkov could not run ({exc}); run scripts/checkov.sh --install-only")
    if not result.stdout.strip().startswith(("{", "[")):
        skip_loudly(f"checkov is not installed in .venv-checkov: {result.stderr.strip()[-400:]}")
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    (terraform_report,) = [r for r in reports if r.get("check_type") == "terraform"]
    return terraform_report


# Installing checkov into its own venv (a fresh clone) and scanning take about 40 s of
# mostly one core: alongside the rest of the suite.
@pytest.mark.background
def test_checkov_has_zero_failed_checks_and_every_skip_has_a_reason() -> None:
    # Scan the checkout itself: the copy would carry .terraform/ from init.
    report = _checkov_report(MODULE)
    failed = report["results"]["failed_checks"]
    lines = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}" for c in failed
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(lines)
    assert report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 100, "checkov scanned suspiciously little"
    for check in report["results"]["skipped_checks"]:
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        assert len(reason) >= 20, (
            f"{check['check_id']} on {check['resource']} skipped without a reason"
        )
