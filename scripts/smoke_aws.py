"""Prove the whole system in your own AWS account, in one command (``make smoke-aws``).

    python scripts/smoke_aws.py --secret-arn ARN --vpc-id VPC --subnet-ids SUBNET[,SUBNET]
                                --task-image IMAGE [--region REGION] [--security-group-ids SG]

Under a unique name prefix it packages the Lambdas, applies
``terraform/examples/smoke`` (the module with one database and a throwaway SQS queue
subscribed to the alert topic), starts one on-demand execution with ``verify: true``,
follows it printing the state transitions, and checks that it SUCCEEDED with a
complete manifest, a passing verdict with its recovery time, and a notification that
links the dashboard; that the dashboard shows the database; and that the hourly
freshness function, invoked once, finds the new backup. Then it destroys everything,
the bucket's objects included (``--keep`` leaves it all).

Credentials, region and endpoint come from the standard AWS environment
(``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL``): with ``AWS_ENDPOINT_URL`` set,
every call (Terraform's too) goes there; that is how the tests run it against the
emulator. Every option may also be given as ``SMOKE_<OPTION>`` in the environment
(``SMOKE_SECRET_ARN``, ``SMOKE_SUBNET_IDS``, ...). Exit 0 when every check passed
and everything was destroyed.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TERMINAL = {"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"}


def log(message: str) -> None:
    print(f"smoke: {message}", flush=True)


@dataclass
class Checks:
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        log(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures.append(what)
        return ok


################################################################################
# Terraform
################################################################################


def terraform(workdir: Path, *args: str, timeout: int = 3600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}
    log(f"terraform {' '.join(args[:1])} ...")
    started = time.monotonic()
    result = subprocess.run(
        ["terraform", *args, "-no-color"], cwd=workdir, env=env, capture_output=True,
        text=True, timeout=timeout, check=False,
    )  # fmt: skip
    log(f"terraform {args[0]}: exit {result.returncode} after {time.monotonic() - started:.0f} s")
    if result.returncode != 0:
        sys.stderr.write(result.stdout[-6000:] + result.stderr[-6000:])
    return result


def copy_module(destination: Path) -> Path:
    """terraform/ and state_machine/ (the module renders the ASL from ../state_machine)."""
    ignore = shutil.ignore_patterns(".terraform", ".terraform.lock.hcl", "*.tfstate*")
    shutil.copytree(REPO / "terraform", destination / "terraform", ignore=ignore)
    shutil.copytree(REPO / "state_machine", destination / "state_machine")
    return destination / "terraform" / "examples" / "smoke"


def package_lambdas(destination: Path, arch: str) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "package_lambdas", REPO / "scripts" / "package_lambdas.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build(arch, "3.12", destination / "pgautodumper-lambda.zip")


################################################################################
# AWS
################################################################################


def client(service: str, region: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        service, region_name=region, config=Config(retries={"mode": "standard", "max_attempts": 5})
    )


def follow(sfn: Any, execution_arn: str, timeout: float) -> dict[str, Any]:
    """Print every state entered/left and every failure until the execution ends."""
    started, seen, deadline = time.monotonic(), 0, time.monotonic() + timeout
    while True:
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
        while True:
            page = sfn.get_execution_history(**kwargs)
            events.extend(page["events"])
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        for event in events[seen:]:
            line = describe(event)
            if line:
                print(f"  +{time.monotonic() - started:7.1f}s  {line}", flush=True)
        seen = len(events)
        described = sfn.describe_execution(executionArn=execution_arn)
        if described["status"] in TERMINAL:
            return described
        if time.monotonic() > deadline:
            sfn.stop_execution(executionArn=execution_arn, error="SmokeTimeout")
            return sfn.describe_execution(executionArn=execution_arn)
        time.sleep(2)


def describe(event: dict[str, Any]) -> str | None:
    kind = event["type"]
    if kind.endswith("StateEntered"):
        return f"entered {event['stateEnteredEventDetails']['name']}"
    if kind.endswith("StateExited"):
        return f"left    {event['stateExitedEventDetails']['name']}"
    for key, details in event.items():
        if key.endswith(("FailedEventDetails", "TimedOutEventDetails")) and isinstance(
            details, dict
        ):
            return f"{kind}: {details.get('error', '')} {details.get('cause', '')[:300]}"
    if kind.startswith("Execution"):
        return kind
    return None


def empty_bucket(s3: Any, bucket: str) -> int:
    """Delete every version and delete marker (terraform's force_destroy would too)."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for version in page.get("Versions", []) + page.get("DeleteMarkers", []):
                s3.delete_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])
                deleted += 1
    except s3.exceptions.NoSuchBucket:
        pass
    return deleted


def manifest_objects(raw: bytes, key: str) -> list[tuple[str, int]]:
    """(key, stored bytes) of every object a manifest lists, read as the package reads it."""
    from pgautodumper.manifest import ManifestV2, parse_manifest

    manifest = parse_manifest(raw, key)
    if isinstance(manifest, ManifestV2):
        return [(o.key, o.stored_bytes) for o in manifest.objects()]
    return [(manifest.dump_key, manifest.stored_bytes)]


def check_run(
    checks: Checks, region: str, outputs: dict[str, Any], described: dict[str, Any]
) -> None:
    s3, sqs = client("s3", region), client("sqs", region)
    checks.check(described["status"] == "SUCCEEDED", f"execution {described['status']}"
                 + (f" ({described.get('error')}: {described.get('cause', '')[:500]})"
                    if described["status"] != "SUCCEEDED" else ""))  # fmt: skip
    report = json.loads(described.get("output") or "{}")
    dump, verify = report.get("dump") or {}, report.get("verify") or {}
    bucket = outputs["bucket_name"]

    manifest_key = dump.get("manifest_key")
    if checks.check(bool(manifest_key), f"the output names the manifest ({manifest_key})"):
        try:
            raw = s3.get_object(Bucket=bucket, Key=manifest_key)["Body"].read()
            manifest = json.loads(raw)
        except Exception as exc:  # any failure here is the finding
            checks.check(False, f"manifest s3://{bucket}/{manifest_key} readable: {exc}")
        else:
            checks.check(
                manifest.get("format_version") in (1, 2), "manifest format_version is known"
            )
            checks.check(manifest.get("name") == "smoke", "manifest names the backup")
            objects = manifest_objects(raw, manifest_key)
            checks.check(bool(objects), f"manifest lists {len(objects)} stored object(s)")
            for key, size in objects:
                try:
                    head = s3.head_object(Bucket=bucket, Key=key)
                except Exception as exc:
                    checks.check(False, f"{key} exists: {exc}")
                    continue
                if size is not None:
                    checks.check(
                        head["ContentLength"] == size, f"{key}: {size} bytes as the manifest says"
                    )
    checks.check(verify.get("verdict") == "passed", f"verify verdict {verify.get('verdict')!r} "
                 f"({verify.get('reason') or 'row counts match the manifest'})")  # fmt: skip
    seconds = verify.get("restore_seconds")
    checks.check(isinstance(seconds, int | float) and seconds > 0,
                 f"recovery time measured: restore_seconds = {seconds}")  # fmt: skip

    # The notification (notify_on_success): SNS delivers the raw message to the queue.
    queue, deadline, bodies = outputs["notification_queue_url"], time.monotonic() + 120, []
    execution_arn = described["executionArn"]
    while time.monotonic() < deadline:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=5)
        bodies += [m["Body"] for m in messages.get("Messages", [])]
        if any(
            execution_arn in body or execution_arn.rsplit(":", 1)[-1] in body for body in bodies
        ):
            break
    checks.check(
        any(execution_arn.rsplit(":", 1)[-1] in body for body in bodies),
        f"a notification about this execution reached the queue ({len(bodies)} message(s))",
    )
    dashboard_url = outputs["dashboard_url"]
    checks.check(
        any(dashboard_url in body for body in bodies),
        f"the notification links the dashboard ({dashboard_url})",
    )
    check_dashboard(checks, region, dashboard_url, "smoke")
    check_freshness(checks, region, outputs["freshness_function_arn"], "smoke")


def check_dashboard(checks: Checks, region: str, url: str, name: str) -> None:
    """The dashboard the notification links exists and has the database's widgets."""
    dashboard = url.rsplit("/", 1)[-1]
    try:
        body = json.loads(
            client("cloudwatch", region).get_dashboard(DashboardName=dashboard)["DashboardBody"]
        )
    except Exception as exc:  # any failure here is the finding
        checks.check(False, f"dashboard {dashboard} readable: {exc}")
        return
    metrics = {
        part
        for widget in body.get("widgets", [])
        for metric in widget.get("properties", {}).get("metrics", [])
        for part in metric
        if isinstance(part, str)
    }
    wanted = {"HoursSinceLastBackup", "BackupBytes", "BackupDurationSeconds", "RestoreSeconds"}
    checks.check(
        wanted <= metrics and name in metrics and "BackupFailed" in json.dumps(body),
        f"dashboard {dashboard} graphs {name}: {', '.join(sorted(wanted))}, BackupFailed",
    )


def check_freshness(checks: Checks, region: str, function_arn: str, name: str) -> None:
    """Invoke the hourly freshness function once: it must find the backup just taken."""
    try:
        response = client("lambda", region).invoke(FunctionName=function_arn, Payload=b"{}")
        payload = json.loads(response["Payload"].read() or b"{}")
    except Exception as exc:  # any failure here is the finding
        checks.check(False, f"freshness function invoked: {exc}")
        return
    rows = {row.get("name"): row for row in payload.get("names", []) if isinstance(row, dict)}
    last = (rows.get(name) or {}).get("last_backup") or {}
    checks.check(
        "FunctionError" not in response and isinstance(last.get("age_hours"), int | float),
        f"freshness publishes HoursSinceLastBackup for {name} "
        f"({last.get('age_hours')} h; {response.get('FunctionError') or 'ok'})",
    )


################################################################################
# main
################################################################################


def parse(argv: list[str] | None) -> argparse.Namespace:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--secret-arn", default=env("SMOKE_SECRET_ARN"), help="existing RDS-format secret"
    )
    parser.add_argument("--vpc-id", default=env("SMOKE_VPC_ID"))
    parser.add_argument("--subnet-ids", default=env("SMOKE_SUBNET_IDS"), help="comma-separated")
    parser.add_argument("--security-group-ids", default=env("SMOKE_SECURITY_GROUP_IDS", ""),
                        help="comma-separated; empty: the module creates one")  # fmt: skip
    parser.add_argument("--task-image", default=env("SMOKE_TASK_IMAGE"))
    parser.add_argument("--secret-kms-key-arns", default=env("SMOKE_SECRET_KMS_KEY_ARNS", ""))
    parser.add_argument("--sslmode", default=env("SMOKE_SSLMODE", "require"))
    parser.add_argument("--region", default=env("AWS_REGION") or env("AWS_DEFAULT_REGION"))
    parser.add_argument("--name-prefix", default=env("SMOKE_NAME_PREFIX"))
    parser.add_argument("--lambda-zip", default=env("SMOKE_LAMBDA_ZIP"),
                        help="a built artifact; default: package one now")  # fmt: skip
    parser.add_argument("--lambda-arch", default=env("LAMBDA_ARCH", "x86_64"))
    parser.add_argument("--task-cpu", type=int, default=int(env("SMOKE_TASK_CPU", "1024")))
    parser.add_argument("--task-memory", type=int, default=int(env("SMOKE_TASK_MEMORY", "2048")))
    parser.add_argument("--timeout", type=int, default=int(env("SMOKE_TIMEOUT", "3600")),
                        help="seconds the execution may take")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="do not destroy (debugging)")
    args = parser.parse_args(argv)
    missing = [
        f"--{name.replace('_', '-')}"
        for name in ("secret_arn", "vpc_id", "subnet_ids", "task_image", "region")
        if not getattr(args, name)
    ]
    if missing:
        parser.error(f"missing {', '.join(missing)} (or SMOKE_* / AWS_REGION in the environment)")
    args.name_prefix = args.name_prefix or f"pgad-smoke-{secrets.token_hex(3)}"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    checks = Checks()
    workdir = Path(tempfile.mkdtemp(prefix=f"{args.name_prefix}-"))
    log(f"name prefix {args.name_prefix}, region {args.region}, work dir {workdir}")
    if os.environ.get("AWS_ENDPOINT_URL"):
        log(f"every AWS call goes to {os.environ['AWS_ENDPOINT_URL']}")
    zip_path = (
        Path(args.lambda_zip) if args.lambda_zip else package_lambdas(workdir, args.lambda_arch)
    )
    example = copy_module(workdir)
    variables = {
        "name_prefix": args.name_prefix,
        "region": args.region,
        "task_image": args.task_image,
        "secret_arn": args.secret_arn,
        "secret_kms_key_arns": [a for a in args.secret_kms_key_arns.split(",") if a],
        "vpc_id": args.vpc_id,
        "subnet_ids": [s for s in args.subnet_ids.split(",") if s],
        "security_group_ids": [s for s in args.security_group_ids.split(",") if s],
        "sslmode": args.sslmode,
        "task_cpu": args.task_cpu,
        "task_memory": args.task_memory,
        "lambda_zip_path": str(zip_path.resolve()),
        "endpoint_url": os.environ.get("AWS_ENDPOINT_URL") or None,
    }
    (example / "smoke.auto.tfvars.json").write_text(json.dumps(variables, indent=2))

    applied = False
    outputs: dict[str, Any] = {}
    try:
        if terraform(example, "init", "-input=false").returncode != 0:
            checks.check(False, "terraform init")
            return 1
        applied = True  # a failed apply may have created some resources: destroy regardless
        apply = terraform(example, "apply", "-auto-approve", "-parallelism=20")
        if not checks.check(apply.returncode == 0, "terraform apply of examples/smoke"):
            return 1
        raw = json.loads(terraform(example, "output", "-json").stdout)
        outputs = {name: value["value"] for name, value in raw.items()}

        request = json.loads(outputs["on_demand_input"])
        request["verify"] = True
        sfn = client("stepfunctions", args.region)
        name = f"smoke-{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(2)}"
        started = sfn.start_execution(
            stateMachineArn=outputs["state_machine_arn"], name=name, input=json.dumps(request)
        )
        log(f"execution {started['executionArn']}")
        described = follow(sfn, started["executionArn"], args.timeout)
        check_run(checks, args.region, outputs, described)
    finally:
        if applied and not args.keep:
            if outputs.get("bucket_name"):
                count = empty_bucket(client("s3", args.region), outputs["bucket_name"])
                log(f"emptied s3://{outputs['bucket_name']} ({count} versions)")
            destroy = terraform(example, "destroy", "-auto-approve", "-parallelism=20")
            if checks.check(destroy.returncode == 0, "terraform destroy (everything removed)"):
                shutil.rmtree(workdir, ignore_errors=True)
            else:
                log(f"state kept in {example}: run `terraform destroy` there")
        elif args.keep:
            log(f"--keep: nothing destroyed; state in {example}")
    if checks.failures:
        log(f"FAILED: {len(checks.failures)} check(s): " + "; ".join(checks.failures))
        return 1
    log(
        "PASSED: backup, manifest, verified restore, notification, dashboard and freshness; "
        "everything destroyed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
