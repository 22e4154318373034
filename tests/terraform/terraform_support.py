"""Running terraform offline, and reading the module's HCL for our own checks.

terraform needs a CLI config file that points provider installation at the
offline mirror (/opt/tf-plugins); each test session writes its own into a tmp
dir, so ``make test`` needs no set-up. The module is copied (with
state_machine/) into a tmp tree before ``init`` so the checkout never gets
``.terraform/`` directories or lock files.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
MODULE = REPO / "terraform"
STATE_MACHINE = REPO / "state_machine"
MIRROR = Path(os.environ.get("TF_PLUGIN_MIRROR", "/opt/tf-plugins"))
CHECKOV = REPO / "scripts" / "checkov.sh"
# The background child of every module that reads the plan of 100 databases (conftest's
# scale_plan): one child, so the plan is made once.
SCALE_PLAN_CHILD = "tests/terraform (the plan of 100 databases)"

# label -> seconds, for every terraform command of the session (printed in the summary).
TIMINGS: dict[str, float] = {}

CLI_CONFIG = """provider_installation {{
  filesystem_mirror {{
    path    = "{mirror}"
    include = ["registry.terraform.io/*/*"]
  }}
  direct {{
    exclude = ["registry.terraform.io/*/*"]
  }}
}}
"""


def missing_terraform() -> str | None:
    """Why terraform cannot run here, or None when it can."""
    if shutil.which("terraform") is None:
        return "terraform is not on PATH"
    if not (MIRROR / "registry.terraform.io" / "hashicorp" / "aws").is_dir():
        return f"no hashicorp/aws provider in the offline mirror {MIRROR}"
    return None


def skip_loudly(reason: str) -> None:
    import pytest

    message = f"SKIPPED: {reason}"
    print(f"\n*** {message} ***", file=sys.stderr)
    pytest.skip(message)


def write_cli_config(directory: Path) -> Path:
    path = directory / "terraformrc"
    path.write_text(CLI_CONFIG.format(mirror=MIRROR))
    return path


def copy_module(destination: Path) -> Path:
    """Copy terraform/ (and state_machine/) keeping their relative layout."""
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
    shutil.copytree(MODULE, destination / "terraform", ignore=ignore)
    if STATE_MACHINE.is_dir():
        shutil.copytree(STATE_MACHINE, destination / "state_machine")
    return destination / "terraform"


@dataclass
class Terraform:
    """terraform with the offline CLI config; records how long each command took."""

    cli_config: Path
    timings: dict[str, float] = field(default_factory=dict)

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(self.cli_config),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }
        return {**env, **(extra or {})}

    def run(
        self,
        *args: str,
        cwd: Path,
        label: str | None = None,
        timeout: int = 300,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        result = subprocess.run(
            ["terraform", *args, "-no-color"],
            cwd=cwd,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        elapsed = time.monotonic() - started
        name = label or f"{args[0]} {cwd.name}"
        self.timings[name] = elapsed
        TIMINGS[name] = elapsed
        return result


################################################################################
# HCL reading for the checks checkov misses
################################################################################


def load_hcl(directory: Path) -> dict[str, list[dict[str, Any]]]:
    """Every top-level block of every .tf file in ``directory``, merged by kind."""
    import hcl2

    merged: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.tf")):
        with path.open() as handle:
            parsed = hcl2.load(handle)
        for kind, blocks in parsed.items():
            if isinstance(blocks, list):
                merged.setdefault(kind, []).extend(blocks)
    return merged


def unquote(value: Any) -> Any:
    """python-hcl2 keeps string literals quoted (``'"x"'``); strip one level."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(hcl: dict[str, list[dict[str, Any]]], kind: str, type_name: str) -> dict[str, dict]:
    """``resource``/``data`` blocks of one type, by name (quotes stripped)."""
    found: dict[str, dict] = {}
    for block in hcl.get(kind, []):
        for block_type, named in block.items():
            if unquote(block_type) != type_name:
                continue
            for name, body in named.items():
                found[unquote(name)] = body
    return found


def locals_map(hcl: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for block in hcl.get("locals", []):
        merged.update({k: v for k, v in block.items() if not k.startswith("__")})
    return merged


_ACTION_LITERAL = re.compile(r'"(\*|[a-z0-9-]+:[A-Za-z0-9*]+)"')
_LOCAL_ACTIONS = re.compile(r"local\.actions\.([a-z_]+)")


def expand_actions(expression: Any, action_sets: dict[str, list[str]]) -> list[str]:
    """Resolve an ``actions`` value: literals plus ``local.actions.<set>`` references."""
    if isinstance(expression, list):
        return [action for item in expression for action in expand_actions(item, action_sets)]
    text = str(expression)
    if text.startswith('"') and text.endswith('"') and "${" not in text:
        return [unquote(text)]
    actions = [match for match in _ACTION_LITERAL.findall(text)]
    for name in _LOCAL_ACTIONS.findall(text):
        if name not in action_sets:
            raise KeyError(f"local.actions.{name} is referenced but not defined")
        actions.extend(action_sets[name])
    return actions


@dataclass(frozen=True)
class Statement:
    document: str
    sid: str
    effect: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    # (test, variable) of each condition, and whether the statement names principals
    # (a resource policy: bucket, key, topic, queue).
    conditions: tuple[tuple[str, str], ...] = ()
    has_principals: bool = False


def policy_statements(hcl: dict[str, list[dict[str, Any]]]) -> list[Statement]:
    """Every statement (plain and dynamic) of every aws_iam_policy_document."""
    raw_sets = locals_map(hcl).get("actions", {})
    action_sets = {
        name: [unquote(action) for action in values]
        for name, values in raw_sets.items()
        if not name.startswith("__")
    }
    found: list[Statement] = []
    for document, body in blocks(hcl, "data", "aws_iam_policy_document").items():
        statements = list(body.get("statement", []))
        for dynamic in body.get("dynamic", []):
            for _, dyn in dynamic.items():
                statements.extend(dyn.get("content", []))
        for statement in statements:
            resources = statement.get("resources", [])
            if not isinstance(resources, list):
                resources = [resources]
            found.append(
                Statement(
                    document=document,
                    sid=unquote(statement.get("sid", "")),
                    effect=unquote(statement.get("effect", '"Allow"')),
                    actions=tuple(expand_actions(statement.get("actions", []), action_sets)),
                    resources=tuple(unquote(resource) for resource in resources),
                    conditions=tuple(
                        (unquote(c.get("test", "")), unquote(c.get("variable", "")))
                        for c in statement.get("condition", [])
                    ),
                    has_principals=bool(statement.get("principals")),
                )
            )
    return found


def source_documents(hcl: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """document -> the documents its source_policy_documents merge in."""
    found: dict[str, list[str]] = {}
    for document, body in blocks(hcl, "data", "aws_iam_policy_document").items():
        sources = str(body.get("source_policy_documents", ""))
        found[document] = re.findall(r"data\.aws_iam_policy_document\.([a-z_]+)", sources)
    return found
