"""Smoke test: apply examples/local to the emulator, run one backup, destroy.

This is the module as a user deploys it, against moto instead of AWS: the
real ASL rendered by Terraform's templatefile, the real handlers behind the
six functions, the real dump task (a local subprocess) against a real
PostgreSQL. It needs the local runtime (pgautodumper.local.emulator): plain
moto over HTTP lacks ValidateStateMachineDefinition and
ListStateMachineVersions, and ``terraform apply`` of aws_sfn_state_machine
hangs without them.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE
from tests.terraform.terraform_support import REPO, Terraform, skip_loudly

# apply ~80 s + run + destroy ~40 s here; more on a loaded machine.
pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.timeout(900)]

BUILT_ZIP = REPO / "build" / "lambda" / "pgautodumper-lambda.zip"


def _emulator_class():
    try:
        from pgautodumper.local import patches
        from pgautodumper.local.emulator import Emulator
    except ImportError as exc:
        skip_loudly(f"the local runtime (pgautodumper.local.emulator) is not importable: {exc}")
    if not hasattr(patches, "apply"):
        skip_loudly("pgautodumper.local.patches has no apply(): the runtime is incomplete")
    return Emulator


def _lambda_zip(directory: Path) -> Path:
    """The `make package` artifact when present; else the sources, zipped here.

    moto only stores the zip: the emulator imports the handler from the
    checkout, so the sources are enough for the smoke test.
    """
    if BUILT_ZIP.exists():
        return BUILT_ZIP
    path = directory / "pgautodumper-lambda.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in ("lambdas", "pgautodumper"):
            for source in sorted((REPO / package).rglob("*.py")):
                archive.write(source, source.relative_to(REPO).as_posix())
    return path


def _empty_bucket(emulator, bucket: str) -> None:
    """Delete every version while versioning is still Enabled.

    terraform destroy suspends versioning (aws_s3_bucket_versioning goes
    first) and then force_destroy deletes by version id; moto 5.2.5 answers
    500 for that in a Suspended bucket holding delete markers
    ('FakeDeleteMarker' object has no attribute 'dispose'), and destroy
    retries until it times out. Real S3 does not need this.
    """
    s3 = emulator.client("s3")
    try:
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
    except s3.exceptions.NoSuchBucket:
        pass


@pytest.fixture(scope="module")
def emulator() -> Iterator[object]:
    Emulator = _emulator_class()
    with Emulator() as emu:
        yield emu


def test_apply_run_one_backup_and_destroy(
    terraform: Terraform, module_copy: Path, emulator, make_database, tmp_path: Path
) -> None:
    example = module_copy / "examples" / "local"
    if not (module_copy.parent / "state_machine" / "backup.asl.json").exists():
        skip_loudly("state_machine/backup.asl.json does not exist yet")
    variables = [
        f"-var=moto_endpoint={emulator.endpoint}",
        f"-var=lambda_zip_path={_lambda_zip(tmp_path)}",
    ]

    init = terraform.run("init", "-backend=false", cwd=example, label="init local (apply)")
    assert init.returncode == 0, init.stderr
    apply = terraform.run(
        "apply", "-auto-approve", "-parallelism=20", *variables,
        cwd=example, label="apply local", timeout=600,
    )  # fmt: skip
    try:
        assert apply.returncode == 0, f"apply failed:\n{apply.stdout[-4000:]}{apply.stderr}"
        outputs_run = terraform.run("output", "-json", cwd=example, label="output local")
        outputs = {k: v["value"] for k, v in json.loads(outputs_run.stdout).items()}

        # The secret holds a real PostgreSQL's connection (RDS format).
        url = make_database("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 99);")
        dbname = url.rsplit("/", 1)[1]
        port = int(url.split("@127.0.0.1:", 1)[1].split("/", 1)[0])
        emulator.client("secretsmanager").put_secret_value(
            SecretId=outputs["database_secret_arn"],
            SecretString=json.dumps(
                {
                    "engine": "postgres",
                    "host": "127.0.0.1",
                    "port": port,
                    "username": BACKUP_ROLE,
                    "password": BACKUP_PASSWORD,
                    "dbname": dbname,
                }
            ),
        )

        request = json.loads(outputs["example_on_demand_input"])
        assert request["bucket"] == outputs["bucket_name"]
        result = emulator.run_execution(outputs["state_machine_arn"], request, timeout=600)
        assert result.status == "SUCCEEDED", (result.error, result.cause, result.visited)
        for state in ("LookupSecret", "Preflight", "Dump", "Record"):
            assert any(state in visited for visited in result.visited), result.visited

        listed = emulator.client("s3").list_objects_v2(Bucket=outputs["bucket_name"])
        keys = [item["Key"] for item in listed.get("Contents", [])]
        assert any(key.endswith(".manifest.json") for key in keys), keys
        assert any(key.endswith(".dump.zst") for key in keys), keys
        assert not any(key.endswith("/.lock") for key in keys), "the lock was not released"
        assert BACKUP_PASSWORD not in json.dumps(result.history, default=str)
    finally:
        _empty_bucket(emulator, "pgad-local-backups")
        destroy = terraform.run(
            "destroy", "-auto-approve", "-parallelism=20", *variables,
            cwd=example, label="destroy local", timeout=600,
        )  # fmt: skip
    assert destroy.returncode == 0, f"terraform destroy failed:\n{destroy.stderr}"
