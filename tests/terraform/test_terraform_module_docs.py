"""The module's interface is documented and typed (terraform-aws-modules style)."""

from __future__ import annotations

import re

import hcl2
import pytest

from tests.terraform.terraform_support import MODULE, unquote

README = (MODULE / "README.md").read_text()


def _blocks(filename: str, kind: str) -> dict[str, dict]:
    with (MODULE / filename).open() as handle:
        parsed = hcl2.load(handle)
    return {unquote(name): body for block in parsed[kind] for name, body in block.items()}


VARIABLES = _blocks("variables.tf", "variable")
OUTPUTS = _blocks("outputs.tf", "output")


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_variable_is_typed_described_and_in_the_readme(name: str) -> None:
    body = VARIABLES[name]
    assert "type" in body, f"variable {name} has no type"
    assert len(unquote(body.get("description", ""))) > 15, f"variable {name} has no description"
    assert "any" not in str(body["type"]).split("(")[0], f"variable {name} is typed any"
    assert f"| `{name}` |" in README, f"variable {name} is missing from the README inputs table"


@pytest.mark.parametrize("name", sorted(OUTPUTS))
def test_output_is_described_and_in_the_readme(name: str) -> None:
    assert unquote(OUTPUTS[name].get("description", "")), f"output {name} has no description"
    assert f"| `{name}` |" in README, f"output {name} is missing from the README outputs table"


def test_booleans_read_as_questions() -> None:
    booleans = [name for name, body in VARIABLES.items() if body["type"] in ("bool", "${bool}")]
    assert len(booleans) >= 4
    for name in booleans:
        assert re.match(r"(create|enable|force|assign)_", name), f"boolean {name} is not a question"
        assert "?" in unquote(VARIABLES[name]["description"]), f"describe {name} as a question"


def test_readme_has_usage_first_then_inputs_and_outputs() -> None:
    usage, deploy = README.index("## Usage"), README.index("## Deploy")
    inputs, outputs = README.index("## Inputs"), README.index("## Outputs")
    assert usage < inputs < outputs
    assert usage < deploy
    for command in ("pgautodumper list", "pgautodumper restore --latest", "pgautodumper verify"):
        assert command in README, f"the restore runbook lacks {command!r}"


def test_the_issue_s_files_exist() -> None:
    for filename in ("versions.tf", "variables.tf", "outputs.tf", "main.tf", "README.md"):
        assert (MODULE / filename).exists(), filename
