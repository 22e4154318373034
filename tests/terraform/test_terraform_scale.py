"""The module at scale and at its limits: every IAM policy within AWS's size quotas, every
name within its service's length limit.

tests/terraform/scale plans the module (never applies it) with 100 databases, the
longest allowed name_prefix, database key and secret ARN, and every optional grant;
``terraform show -json`` of that plan (the session fixture ``scale_plan``, conftest.py)
gives every rendered policy and every name.

Limits (IAM: https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html,
which counts policy size without white space):
- the inline policies of one role together: 10,240 characters;
- one managed policy: 6,144 characters; managed policies per role: 10 (default quota);
- a role trust policy: 2,048 characters (default quota);
names: botocore's service models (min/max of each API's name parameter), and the
IAM quotas page for role (64), role name_prefix (38 in the AWS provider) and policy
(128) names.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.terraform_support import SCALE_PLAN_CHILD, Terraform

# One Terraform plan of 100 databases, single-threaded: alongside the database tests.
pytestmark = [
    pytest.mark.terraform,
    pytest.mark.slow,
    pytest.mark.background(group=SCALE_PLAN_CHILD),
]

INLINE_PER_ROLE = 10_240
MANAGED_POLICY = 6_144
TRUST_POLICY = 2_048
MANAGED_PER_ROLE = 10

# Policies that are still unknown at plan time, and why that is safe: they do not grow
# with the number of databases (the apply in test_smoke_aws.py renders them for real).
UNKNOWN_AT_PLAN = {
    "aws_iam_role_policy.state_machine": "names the task roles, whose ARNs come from IAM",
}


def iam_size(document: str) -> int:
    """Characters IAM counts: the policy without white space (minified JSON, conservative)."""
    return len(json.dumps(json.loads(document), separators=(",", ":")))


def _changes(plan: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in plan["resource_changes"] if c["type"] == kind and c["mode"] == "managed"]


def _local_address(change: dict[str, Any]) -> str:
    """module.pgautodumper.aws_iam_role_policy.lambda["x"] -> aws_iam_role_policy.lambda["x"]"""
    return change["address"].removeprefix(f"{change.get('module_address', '')}.")


def test_the_plan_has_100_databases(scale_plan: dict[str, Any]) -> None:
    names = [
        (c["change"]["after"] or {}).get("alarm_name", "")
        for c in _changes(scale_plan, "aws_cloudwatch_metric_alarm")
    ]
    alarms = [name for name in names if "no-successful-backup" in name]
    assert len(alarms) == 100
    assert len(_changes(scale_plan, "aws_scheduler_schedule")) == 300


def test_inline_policies_fit_per_role(scale_plan: dict[str, Any]) -> None:
    per_role: dict[str, int] = defaultdict(int)
    unknown = []
    for change in _changes(scale_plan, "aws_iam_role_policy"):
        address = _local_address(change)
        policy = (change["change"]["after"] or {}).get("policy")
        if policy is None:
            unknown.append(re.sub(r"\[.*\]$", "", address))
            continue
        role = re.sub(r"^aws_iam_role_policy\.", "", address)
        per_role[role] += iam_size(policy)
    assert set(unknown) <= set(UNKNOWN_AT_PLAN), f"policies unknown at plan: {unknown}"
    assert len(per_role) >= 12, per_role
    too_big = {role: size for role, size in per_role.items() if size > INLINE_PER_ROLE}
    assert not too_big, f"inline policies over {INLINE_PER_ROLE} characters: {too_big}"
    print({role: size for role, size in sorted(per_role.items())})


def test_managed_policies_fit_and_roles_stay_under_the_attachment_quota(
    scale_plan: dict[str, Any],
) -> None:
    policies = _changes(scale_plan, "aws_iam_policy")
    assert len(policies) == 5, "100 databases: five secret policies of 20"
    for change in policies:
        policy = change["change"]["after"]["policy"]
        assert policy is not None, change["address"]
        assert iam_size(policy) <= MANAGED_POLICY, (change["address"], iam_size(policy))
    per_role: dict[str, int] = defaultdict(int)
    for change in _changes(scale_plan, "aws_iam_role_policy_attachment"):
        per_role[change["index"].rsplit("-", 1)[0]] += 1
    assert per_role == {"lookup_secret": 5, "preflight": 5, "task": 5}
    assert max(per_role.values()) <= MANAGED_PER_ROLE


def test_trust_policies_fit(scale_plan: dict[str, Any]) -> None:
    roles = _changes(scale_plan, "aws_iam_role")
    assert roles
    for change in roles:
        trust = change["change"]["after"]["assume_role_policy"]
        assert trust is not None and iam_size(trust) <= TRUST_POLICY, change["address"]


################################################################################
# Names
################################################################################


def _botocore_limit(service: str, operation: str, member: str) -> int:
    import botocore.session

    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape.members[member]
    return int(shape.metadata["max"])


# resource type -> [(attribute, limit, where the limit comes from)]
def _name_limits() -> dict[str, list[tuple[str, int, str]]]:
    limit = _botocore_limit
    return {
        "aws_scheduler_schedule": [("name", limit("scheduler", "CreateSchedule", "Name"), "api")],
        "aws_scheduler_schedule_group": [
            ("name", limit("scheduler", "CreateScheduleGroup", "Name"), "api")
        ],
        "aws_cloudwatch_metric_alarm": [
            ("alarm_name", limit("cloudwatch", "PutMetricAlarm", "AlarmName"), "api")
        ],
        "aws_cloudwatch_log_group": [
            ("name", limit("logs", "CreateLogGroup", "logGroupName"), "api")
        ],
        "aws_iam_role": [("name", 64, "IAM quotas"), ("name_prefix", 38, "provider: 64 - 26")],
        "aws_iam_role_policy": [("name", 128, "IAM quotas")],
        "aws_iam_policy": [("name_prefix", 102, "IAM quotas: 128 - 26")],
        "aws_lambda_function": [("function_name", 64, "Lambda: a name, not an ARN")],
        "aws_sfn_state_machine": [
            ("name", limit("stepfunctions", "CreateStateMachine", "name"), "api")
        ],
        "aws_sqs_queue": [("name", 80, "SQS CreateQueue")],
        "aws_sns_topic": [("name", 256, "SNS CreateTopic")],
        "aws_ecs_cluster": [("name", 255, "ECS CreateCluster")],
        "aws_ecs_task_definition": [("family", 255, "ECS RegisterTaskDefinition")],
        "aws_kms_alias": [("name", limit("kms", "CreateAlias", "AliasName"), "api")],
        "aws_security_group": [("name_prefix", 229, "EC2: 255 - 26")],
        "aws_cloudwatch_event_rule": [("name", limit("events", "PutRule", "Name"), "api")],
        # PutDashboard: "The maximum length is 255" (its model carries no max).
        "aws_cloudwatch_dashboard": [("dashboard_name", 255, "CloudWatch PutDashboard")],
    }


def test_every_name_fits_its_service(scale_plan: dict[str, Any]) -> None:
    limits = _name_limits()
    checked, too_long = 0, []
    for change in scale_plan["resource_changes"]:
        after = change["change"]["after"] or {}
        for attribute, limit, source in limits.get(change["type"], []):
            value = after.get(attribute)
            if isinstance(value, str):
                checked += 1
                if len(value) > limit:
                    too_long.append(f"{change['address']}.{attribute} = {value!r}: "
                                    f"{len(value)} > {limit} ({source})")  # fmt: skip
    assert checked > 400, checked
    assert not too_long, "\n".join(too_long)
    # The task's log streams: <prefix>/<container>/<task id> (512 characters, logs API).
    assert len("task/pgautodumper/" + "0" * 32) <= _botocore_limit(
        "logs", "CreateLogStream", "logStreamName"
    )


def test_a_key_one_character_too_long_is_refused(
    terraform: Terraform, scale_plan: dict[str, Any], module_copy: Path
) -> None:
    directory = module_copy.parent / "tests" / "terraform" / "scale"
    text = (directory / "main.tf").read_text()
    (directory / "main.tf").write_text(text.replace("range(56)", "range(57)"))
    try:
        result = terraform.run(
            "validate", cwd=directory, label="validate a 58-character key", timeout=120
        )
        plan = result
        if result.returncode == 0:  # validate may not evaluate module inputs: plan does
            plan = terraform.run(
                "plan", "-refresh=false", "-var=moto_endpoint=http://127.0.0.1:1",
                cwd=directory, label="plan a 58-character key", timeout=300,
            )  # fmt: skip
        assert plan.returncode != 0
        assert "at most 57 characters" in plan.stdout + plan.stderr
    finally:
        (directory / "main.tf").write_text(text)
