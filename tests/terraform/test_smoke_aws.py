"""`make smoke-aws` against the emulator: the one apply + run + destroy of the suite.

scripts/smoke_aws.py is what a user runs in their own account; here it runs unchanged
against the local runtime (pgautodumper.local.emulator) with AWS_ENDPOINT_URL pointing
at it: Terraform applies examples/smoke (the real module, the real ASL), the real
handlers serve the nine functions, the dump and verify tasks run locally
(image "pgautodumper-task:local") against a real PostgreSQL, and the script checks the
manifest, the verdict with its recovery time and the notification, then destroys it all.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import BACKUP_PASSWORD, BACKUP_ROLE
from tests.terraform.terraform_support import REPO, TIMINGS, Terraform, skip_loudly

# apply ~80 s + run + destroy ~40 s here; more on a loaded machine.
pytestmark = [pytest.mark.terraform, pytest.mark.slow, pytest.mark.timeout(900)]


def _emulator_class():
    try:
        from pgautodumper.local.emulator import Emulator
    except ImportError as exc:
        skip_loudly(f"the local runtime (pgautodumper.local.emulator) is not importable: {exc}")
    return Emulator


def _sources_zip(directory: Path) -> Path:
    """The emulator imports the handlers from the checkout and only stores the zip, so the
    sources suffice (packaging itself is tested in tests/unit/test_package_lambdas.py)."""
    path = directory / "pgautodumper-lambda.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in ("lambdas", "pgautodumper"):
            for source in sorted((REPO / package).rglob("*.py")):
                archive.write(source, source.relative_to(REPO).as_posix())
    return path


def test_makefile_runs_the_smoke_script() -> None:
    result = subprocess.run(
        ["make", "-n", "smoke-aws"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "scripts/smoke_aws.py" in result.stdout


@pytest.mark.background  # two minutes of Terraform polling moto: alongside the rest
def test_smoke_aws_against_the_emulator(
    terraform: Terraform, make_database, tmp_path: Path
) -> None:
    Emulator = _emulator_class()
    with Emulator() as emu:
        # moto's backends are per process: forget what earlier tests' emulators left.
        emu.reset()
        ec2 = emu.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.42.0.0/16")["Vpc"]["VpcId"]
        # moto's ECS backend refuses a VPC without DNS hostnames.
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.42.1.0/24")["Subnet"]["SubnetId"]

        url = make_database("CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 99);")
        port = int(url.split("@127.0.0.1:", 1)[1].split("/", 1)[0])
        secret = emu.client("secretsmanager").create_secret(
            Name="pgad-smoke-database",
            SecretString=json.dumps({
                "engine": "postgres", "host": "127.0.0.1", "port": port,
                "username": BACKUP_ROLE, "password": BACKUP_PASSWORD,
                "dbname": url.rsplit("/", 1)[1],
            }),
        )["ARN"]  # fmt: skip

        env = {
            **terraform.env(),
            "AWS_ENDPOINT_URL": emu.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        env.pop("AWS_PROFILE", None)
        command = [
            sys.executable, str(REPO / "scripts" / "smoke_aws.py"),
            "--secret-arn", secret, "--vpc-id", vpc, "--subnet-ids", subnet,
            "--task-image", "pgautodumper-task:local", "--sslmode", "disable",
            "--task-cpu", "256", "--task-memory", "512", "--timeout", "600",
            "--lambda-zip", str(_sources_zip(tmp_path)),
        ]  # fmt: skip
        import time

        started = time.monotonic()
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=850, check=False
        )
        TIMINGS["smoke-aws (apply, run, destroy) against the emulator"] = time.monotonic() - started
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-8000:]
        assert "PASSED" in result.stdout
        for step in ("entered Dump", "entered Verify", "entered Notify"):
            assert step in result.stdout, step
        assert BACKUP_PASSWORD not in output

        # Nothing is left behind.
        assert not [
            b
            for b in emu.client("s3").list_buckets()["Buckets"]
            if b["Name"].startswith("pgad-smoke")
        ]
        assert not emu.client("stepfunctions").list_state_machines()["stateMachines"]
