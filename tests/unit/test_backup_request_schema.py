"""The published JSON Schema of BackupRequest is generated and current, and its example valid."""

from __future__ import annotations

import importlib.util
import json

import jsonschema
import pytest

from pgautodumper.contract import BackupRequest
from tests.conftest import REPO

spec = importlib.util.spec_from_file_location(
    "backup_request_schema", REPO / "scripts" / "backup_request_schema.py"
)
assert spec and spec.loader
generator = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generator)


@pytest.mark.parametrize("name", ["backup-request.schema.json", "backup-request.example.json"])
def test_committed_file_equals_the_generated_one(name):
    committed = (REPO / "schema" / name).read_text()
    assert committed == generator.render()[name], (
        "stale: run .venv/bin/python scripts/backup_request_schema.py"
    )


def load(name: str) -> dict:
    return json.loads((REPO / "schema" / name).read_text())


def test_example_is_valid_for_the_schema_and_the_model():
    schema, example = load("backup-request.schema.json"), load("backup-request.example.json")
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(example, schema)
    request = BackupRequest.model_validate(example)
    assert request.retention.keep_monthly == 12


@pytest.mark.parametrize(
    "broken",
    [
        {"secret_arn": "arn:x", "bucket": "b"},  # no name
        {"name": "n", "secret_arn": "arn:x", "bucket": "b", "retention": {"keep_last": 0}},
        {"name": "n", "secret_arn": "arn:x", "bucket": "b", "task": {"timeout_seconds": 5}},
    ],
)
def test_schema_rejects_what_the_model_rejects(broken):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, load("backup-request.schema.json"))
    with pytest.raises(ValueError):
        BackupRequest.model_validate(broken)


def test_schema_has_no_password_field():
    assert "password" not in (REPO / "schema" / "backup-request.schema.json").read_text()
