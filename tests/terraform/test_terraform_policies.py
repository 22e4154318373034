"""Our own checks, for what checkov misses (DESIGN.md, "Environment facts").

- no plaintext secret in an ECS environment (task definitions and the state
  machine's container overrides);
- Object Lock really configured when enabled (checkov never evaluates it on
  ``object_lock_enabled`` buckets);
- no IAM ``*`` action, and ``*`` resources only on an allow-list, each with the
  reason AWS requires it.

Each check is a function returning violations; the ``*_catches_*`` tests feed
it a broken configuration to prove it can fail.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.terraform.terraform_support import (
    MODULE,
    REPO,
    SCALE_PLAN_CHILD,
    STATE_MACHINE,
    Statement,
    Terraform,
    blocks,
    load_hcl,
    locals_map,
    policy_statements,
    source_documents,
    unquote,
)

# Terraform plans of the module and of the vault, single-threaded: alongside the database
# tests (tests/background.py).
pytestmark = pytest.mark.background(group=SCALE_PLAN_CHILD)

# (policy document, statement sid) -> (the actions allowed on "*", why AWS requires "*").
WILDCARD_RESOURCE_ALLOW_LIST: dict[tuple[str, str], tuple[frozenset[str], str]] = {
    ("kms", "AccountAdministration"): (
        frozenset({"kms:*"}),
        "key policy: '*' means this key; the AWS default delegation to IAM",
    ),
    ("kms", "CloudWatchLogsEncryptsOurLogGroups"): (
        frozenset(
            {
                "kms:Encrypt*",
                "kms:Decrypt*",
                "kms:ReEncrypt*",
                "kms:GenerateDataKey*",
                "kms:Describe*",
            }
        ),
        "key policy: '*' means this key",
    ),
    ("kms", "CloudWatchAlarmsPublishToEncryptedTopic"): (
        frozenset({"kms:Decrypt", "kms:GenerateDataKey*"}),
        "key policy: '*' means this key",
    ),
    ("kms", "LogDeliveryForEncryptedStateMachine"): (
        frozenset({"kms:Decrypt", "kms:GenerateDataKey*"}),
        "key policy: '*' means this key",
    ),
    ("lambda_common", "XRay"): (
        frozenset({"xray:PutTraceSegments", "xray:PutTelemetryRecords"}),
        "X-Ray actions have no resource-level permissions",
    ),
    ("state_machine", "XRay"): (
        frozenset(
            {
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            }
        ),
        "X-Ray actions have no resource-level permissions",
    ),
    ("preflight", "DescribeNetworkInterfaces"): (
        frozenset({"ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"}),
        "EC2 Describe* actions have no resource-level permissions (Lambda VPC access)",
    ),
    ("task_failure", "FindTasksOfRun"): (
        frozenset({"ecs:ListTasks"}),
        "ecs:ListTasks authorizes on container instances (Fargate has none); the ecs:cluster "
        "condition scopes it to the module's cluster",
    ),
    ("task_execution", "EcrLogin"): (
        frozenset({"ecr:GetAuthorizationToken"}),
        "ecr:GetAuthorizationToken is account-wide and takes only '*'",
    ),
    ("state_machine", "LogDelivery"): (
        frozenset(
            {
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            }
        ),
        "CloudWatch Logs vended delivery for Step Functions requires '*' (AWS docs)",
    ),
}

# Service-wide actions allowed only here (they are key-policy administration).
SERVICE_WILDCARD_ALLOW_LIST = {("kms", "AccountAdministration", "kms:*")}

# The container environment names the state machine may set (the CLI's inputs).
CONTAINER_ENV_ALLOW_LIST = {
    "PGAUTODUMPER_TASK",
    "PGAUTODUMPER_SECRET_ID",
    "PGAUTODUMPER_SECRET_VERSION_ID",
    "PGAUTODUMPER_BUCKET",
    "PGAUTODUMPER_PREFIX",
    "PGAUTODUMPER_NAME",
    "PGAUTODUMPER_RUN_ID",
    "PGAUTODUMPER_STARTED_AT",
    "PGAUTODUMPER_PG_DUMP_MAJOR",
    "PGAUTODUMPER_PART_SIZE",
    "PGAUTODUMPER_KEY",
    "PGAUTODUMPER_SCRATCH_LOCAL",
    "PGSSLMODE",
}

SECRET_LIKE_NAME = re.compile(
    r"PASSWORD|PASSWD|PGPASS|TOKEN|CREDENTIAL|PRIVATE|API_?KEY|ACCESS_KEY|"
    r"SECRET(?!_ID$|_ARN$|_VERSION_ID$)",
    re.IGNORECASE,
)
SECRET_LIKE_VALUE = re.compile(r"secret_string|aws_secretsmanager_secret_version|password", re.I)


################################################################################
# The checks
################################################################################


def wildcard_action_violations(statements: list[Statement]) -> list[str]:
    violations = []
    for st in statements:
        if st.effect != "Allow":
            continue
        for action in st.actions:
            if action == "*":
                violations.append(f"{st.document}/{st.sid}: action '*'")
            elif action.endswith(":*") and (st.document, st.sid, action) not in (
                SERVICE_WILDCARD_ALLOW_LIST
            ):
                violations.append(f"{st.document}/{st.sid}: service-wide action {action}")
    return violations


def wildcard_resource_violations(statements: list[Statement]) -> list[str]:
    violations = []
    for st in statements:
        if st.effect != "Allow" or "*" not in st.resources:
            continue
        entry = WILDCARD_RESOURCE_ALLOW_LIST.get((st.document, st.sid))
        if entry is None:
            violations.append(f"{st.document}/{st.sid}: resource '*' is not on the allow-list")
            continue
        allowed, _reason = entry
        extra = set(st.actions) - allowed
        if extra:
            violations.append(
                f"{st.document}/{st.sid}: {sorted(extra)} on '*' beyond the allow-list"
            )
    return violations


def _walk(value: Any) -> list[dict]:
    found = []
    if isinstance(value, dict):
        found.append(value)
        for child in value.values():
            found.extend(_walk(child))
    elif isinstance(value, list):
        for child in value:
            found.extend(_walk(child))
    return found


def ecs_environment_violations(hcl: dict) -> list[str]:
    """Container definitions (in locals or task definitions) carry no secret."""
    scope = {
        "locals": locals_map(hcl),
        "task_definitions": blocks(hcl, "resource", "aws_ecs_task_definition"),
    }
    violations = []
    for where, tree in scope.items():
        text_blobs = [json.dumps(tree)]
        for node in _walk(tree):
            if "secrets" in node:
                violations.append(f"{where}: container 'secrets' (the task reads secrets itself)")
            environment = node.get("environment")
            if environment is None:
                continue
            entries = environment if isinstance(environment, list) else [environment]
            for entry in entries:
                if not isinstance(entry, dict):
                    violations.append(f"{where}: unreviewable environment {entry!r}")
                    continue
                name = str(unquote(entry.get("name", "")))
                value = str(entry.get("value", ""))
                if SECRET_LIKE_NAME.search(name):
                    violations.append(f"{where}: secret-like environment name {name}")
                if SECRET_LIKE_VALUE.search(value):
                    violations.append(f"{where}: environment {name} takes a secret value")
        # Environments written inside a merge()/jsonencode() string expression.
        for blob in text_blobs:
            for name in re.findall(r'name\s*=\s*\\?"([A-Z_][A-Z0-9_]*)', blob):
                if SECRET_LIKE_NAME.search(name):
                    violations.append(f"{where}: secret-like environment name {name}")
    return violations


def asl_override_violations(definition: dict) -> list[str]:
    """Container overrides set only allow-listed, non-secret variables."""
    violations = []
    for node in _walk(definition):
        for override in node.get("ContainerOverrides", []) if isinstance(node, dict) else []:
            for entry in override.get("Environment", []):
                name = entry.get("Name", "")
                if name not in CONTAINER_ENV_ALLOW_LIST or SECRET_LIKE_NAME.search(name):
                    violations.append(f"container override environment {name!r}")
    return violations


def object_lock_violations(hcl: dict) -> list[str]:
    """A bucket that may enable Object Lock has a lock configuration with a default retention."""
    buckets = blocks(hcl, "resource", "aws_s3_bucket")
    configs = blocks(hcl, "resource", "aws_s3_bucket_object_lock_configuration")
    violations = []
    for name, bucket in buckets.items():
        enabled = bucket.get("object_lock_enabled", False)
        if enabled is False or enabled == "false":
            continue
        switch = re.findall(r"var\.[a-z_]+", str(enabled))
        matching = [
            (config_name, config)
            for config_name, config in configs.items()
            if f"aws_s3_bucket.{name}" in str(config.get("bucket", ""))
        ]
        if not matching:
            violations.append(
                f"aws_s3_bucket.{name}: object_lock_enabled without a lock configuration"
            )
            continue
        for config_name, config in matching:
            count = str(config.get("count", ""))
            if switch and "count" in config and not all(var in count for var in switch):
                violations.append(
                    f"object lock configuration {config_name}: count does not follow {switch}"
                )
            rules = config.get("rule", [])
            retention = [r for rule in rules for r in rule.get("default_retention", [])]
            if not retention or not all(
                "mode" in r and ("days" in r or "years" in r) for r in retention
            ):
                violations.append(
                    f"object lock configuration {config_name}: no default retention mode and period"
                )
    return violations


def list_bucket_violations(statements: list[Statement], sources: dict[str, list[str]]) -> list[str]:
    """An identity policy that reads objects can tell a missing key from a denied one.

    Without s3:ListBucket, S3 answers a GET or HEAD of a missing key with 403 instead of
    404 (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html,
    "Permissions"): the lock, a task's outcome document and a verdict may all be absent.
    So every document that allows s3:GetObject (itself or through its source documents)
    also allows s3:ListBucket, scoped by an s3:prefix condition.
    """
    by_document: dict[str, list[Statement]] = {}
    for st in statements:
        by_document.setdefault(st.document, []).append(st)

    def effective(document: str, seen: frozenset[str] = frozenset()) -> list[Statement]:
        found = list(by_document.get(document, []))
        for source in sources.get(document, []):
            if source not in seen:
                found += effective(source, seen | {document})
        return found

    violations = []
    for document in sorted(set(by_document) | set(sources)):
        allowed = [
            st for st in effective(document) if st.effect == "Allow" and not st.has_principals
        ]
        if not any("s3:GetObject" in st.actions for st in allowed):
            continue
        listing = [st for st in allowed if "s3:ListBucket" in st.actions]
        if not listing:
            violations.append(
                f"{document}: s3:GetObject without s3:ListBucket (a missing key is 403)"
            )
        elif not all(any(var == "s3:prefix" for _, var in st.conditions) for st in listing):
            violations.append(f"{document}: s3:ListBucket not scoped by an s3:prefix condition")
    return violations


################################################################################
# The vault: what a primary-account principal can do there (rendered policies)
################################################################################

# What must never be possible for the primary account in the vault.
VAULT_FORBIDDEN_S3 = [
    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:PutObjectRetention",
    "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold", "s3:ReplicateDelete",
    "s3:PutBucketObjectLockConfiguration", "s3:PutLifecycleConfiguration", "s3:PutBucketPolicy",
    "s3:DeleteBucketPolicy", "s3:DeleteBucket", "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration", "s3:PutReplicationConfiguration",
    "s3:DeleteObjectTagging", "s3:PutObjectAcl", "s3:PutBucketAcl",
]  # fmt: skip
# A backup's keys (format 1 and 2, pgautodumper.layout) and the name's lock: never written
# by the primary account in the vault. Only a verify run's verdict and outcome are.
VAULT_STEM = "backups/orders/2026/01/31/20260131T021500Z-abc"
VAULT_BACKUP_KEYS = [
    f"{VAULT_STEM}.dump.zst", f"{VAULT_STEM}.schema.dump.zst", f"{VAULT_STEM}.data.dump.zst",
    f"{VAULT_STEM}.part-00001.copy.zst", f"{VAULT_STEM}.roles.json.zst",
    f"{VAULT_STEM}.manifest.json", "backups/orders/.lock", "backups/orders/.preflight-abc",
]  # fmt: skip
VAULT_VERDICT_KEYS = [f"{VAULT_STEM}.verified.json", f"{VAULT_STEM}.verify.outcome.json"]
VAULT_FORBIDDEN_KMS = [
    "kms:ScheduleKeyDeletion", "kms:DisableKey", "kms:PutKeyPolicy", "kms:CreateGrant",
    "kms:DisableKeyRotation", "kms:CancelKeyDeletion", "kms:UpdateKeyDescription",
]  # fmt: skip


def _listed(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def _matches(pattern: str, value: str) -> bool:
    regex = "^" + re.escape(pattern).replace(r"\*", ".*").replace(r"\?", ".") + "$"
    return re.match(regex, value, re.IGNORECASE) is not None


def _denied_for_account(policy: dict, action: str, resource: str, account: str) -> bool:
    """Does an explicit Deny of this resource policy apply to any principal of ``account``?

    Conditions other than aws:PrincipalAccount = account make a Deny not count (a
    conditional deny is not a guarantee).
    """
    for st in _listed(policy.get("Statement", [])):
        if st.get("Effect") != "Deny":
            continue
        if "Action" in st and not any(_matches(a, action) for a in _listed(st["Action"])):
            continue
        if "NotAction" in st and any(_matches(a, action) for a in _listed(st["NotAction"])):
            continue
        if "Resource" in st and not any(_matches(r, resource) for r in _listed(st["Resource"])):
            continue
        if "NotResource" in st and any(_matches(r, resource) for r in _listed(st["NotResource"])):
            continue
        conditions = st.get("Condition", {})
        if conditions != {
            "StringEquals": {
                "aws:PrincipalAccount": conditions.get("StringEquals", {}).get(
                    "aws:PrincipalAccount"
                )
            }
        }:
            continue
        if account in _listed(conditions["StringEquals"]["aws:PrincipalAccount"]):
            return True
    return False


def vault_violations(bucket_policy: dict, key_policy: dict, bucket_arn: str, account: str,
                     backup_key: str) -> list[str]:  # fmt: skip
    """Every destructive action of every primary-account principal is explicitly denied,
    and so is every write but a verify run's verdict."""
    violations = []
    for action in VAULT_FORBIDDEN_S3:
        for resource in (bucket_arn, f"{bucket_arn}/{backup_key}"):
            if not _denied_for_account(bucket_policy, action, resource, account):
                violations.append(f"bucket policy: {action} on {resource} not denied to {account}")
    for key in [backup_key, *VAULT_BACKUP_KEYS]:
        for action in ("s3:PutObject", "s3:DeleteObject"):
            if not _denied_for_account(bucket_policy, action, f"{bucket_arn}/{key}", account):
                violations.append(f"bucket policy: {action} on {key} not denied to {account}")
    for action in VAULT_FORBIDDEN_KMS:
        if not _denied_for_account(key_policy, action, "*", account):
            violations.append(f"key policy: {action} not denied to {account}")
    return violations


def _allowed(policy: dict, action: str, resource: str, principal: str | None = None) -> bool:
    """Does an Allow of ``policy`` cover ``action`` on ``resource`` (for ``principal``, a role
    ARN, when the policy names principals)? Conditions only narrow an Allow, so they are
    ignored here: "not allowed" means not under any condition. An unconditional Deny wins.
    """

    def covers(st: dict) -> bool:
        if "Action" in st and not any(_matches(a, action) for a in _listed(st["Action"])):
            return False
        if "NotAction" in st and any(_matches(a, action) for a in _listed(st["NotAction"])):
            return False
        if "Resource" in st and not any(_matches(r, resource) for r in _listed(st["Resource"])):
            return False
        if "NotResource" in st and any(_matches(r, resource) for r in _listed(st["NotResource"])):
            return False
        if principal is not None and "Principal" in st:
            arns = _listed(st.get("Condition", {}).get("ArnEquals", {}).get("aws:PrincipalArn", []))
            if arns and principal not in arns:
                return False
        return True

    statements = _listed(policy.get("Statement", []))
    if any(st["Effect"] == "Deny" and not st.get("Condition") and covers(st) for st in statements):
        return False
    return any(st["Effect"] == "Allow" and covers(st) for st in statements)


################################################################################
# The module passes them
################################################################################


@pytest.fixture(scope="module")
def module_hcl() -> dict:
    return load_hcl(MODULE)


@pytest.fixture(scope="module")
def statements(module_hcl: dict) -> list[Statement]:
    found = policy_statements(module_hcl)
    assert len(found) > 30, "parsed suspiciously few policy statements"
    return found


def test_no_wildcard_actions(statements: list[Statement]) -> None:
    assert wildcard_action_violations(statements) == []


def test_wildcard_resources_only_where_aws_requires_them(statements: list[Statement]) -> None:
    assert wildcard_resource_violations(statements) == []


def test_allow_list_has_no_stale_entries(statements: list[Statement]) -> None:
    used = {(st.document, st.sid) for st in statements if "*" in st.resources}
    assert set(WILDCARD_RESOURCE_ALLOW_LIST) <= used, "remove allow-list entries no longer used"
    assert all(reason for _, reason in WILDCARD_RESOURCE_ALLOW_LIST.values())


def test_prune_can_never_bypass_object_lock(statements: list[Statement]) -> None:
    denies = [st for st in statements if st.document == "prune" and st.effect == "Deny"]
    assert any("s3:BypassGovernanceRetention" in st.actions for st in denies)


def test_every_reader_of_a_possibly_absent_key_may_list(module_hcl: dict, statements) -> None:
    assert list_bucket_violations(statements, source_documents(module_hcl)) == []
    # The roles the issue names are among those checked.
    readers = {st.document for st in statements if "s3:GetObject" in st.actions}
    assert {"release_lock", "record", "task", "preflight"} <= readers


def test_list_bucket_check_catches_a_reader_without_it(tmp_path: Path) -> None:
    hcl = _write(
        tmp_path,
        """
data "aws_iam_policy_document" "release_lock" {
  statement {
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = ["arn:aws:s3:::b/backups/*/.lock"]
  }
}
data "aws_iam_policy_document" "record" {
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::b/backups/*"]
  }
  statement {
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::b"]
  }
}
data "aws_iam_policy_document" "record_verify" {
  source_policy_documents = [data.aws_iam_policy_document.record.json]
}
""",
    )
    violations = list_bucket_violations(policy_statements(hcl), source_documents(hcl))
    assert "release_lock: s3:GetObject without s3:ListBucket (a missing key is 403)" in violations
    assert "record: s3:ListBucket not scoped by an s3:prefix condition" in violations
    assert "record_verify: s3:ListBucket not scoped by an s3:prefix condition" in violations


def test_state_machine_passes_only_the_two_task_roles(module_hcl: dict) -> None:
    document = blocks(module_hcl, "data", "aws_iam_policy_document")["state_machine"]
    (pass_role,) = [s for s in document["statement"] if unquote(s.get("sid")) == "PassTaskRoles"]
    assert pass_role["resources"] == [
        "${aws_iam_role.task.arn}",
        "${aws_iam_role.task_execution.arn}",
    ]


def test_no_secret_in_ecs_environment(module_hcl: dict) -> None:
    assert ecs_environment_violations(module_hcl) == []


def test_task_definitions_have_no_environment_at_all() -> None:
    # Stricter than the check: the module sets none; the state machine overrides per run.
    text = (MODULE / "ecs.tf").read_text()
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    assert "environment" not in code
    assert "secrets" not in code


def test_state_machine_overrides_only_allow_listed_environment() -> None:
    path = STATE_MACHINE / "backup.asl.json"
    if not path.exists():
        pytest.skip("SKIPPED: state_machine/backup.asl.json is not written yet")
    definition = json.loads(path.read_text())
    overrides = [n for n in _walk(definition) if isinstance(n, dict) and "ContainerOverrides" in n]
    assert overrides, "the ASL has no container overrides to check"
    assert asl_override_violations(definition) == []


def test_object_lock_is_configured_when_enabled(module_hcl: dict) -> None:
    assert blocks(module_hcl, "resource", "aws_s3_bucket")["this"]["object_lock_enabled"]
    assert object_lock_violations(module_hcl) == []


################################################################################
# The checks can fail
################################################################################


def _write(tmp_path: Path, text: str) -> dict:
    (tmp_path / "main.tf").write_text(text)
    return load_hcl(tmp_path)


BAD_POLICY = """
locals {
  actions = { everything = ["s3:*"] }
}
data "aws_iam_policy_document" "bad" {
  statement {
    sid       = "Admin"
    actions   = ["*"]
    resources = ["*"]
  }
  statement {
    sid       = "AllOfS3"
    actions   = local.actions.everything
    resources = ["arn:aws:s3:::b/*"]
  }
  dynamic "statement" {
    for_each = [1]
    content {
      sid       = "XRay"
      actions   = ["xray:PutTraceSegments", "s3:GetObject"]
      resources = ["*"]
    }
  }
}
data "aws_iam_policy_document" "lambda_common" {
  statement {
    sid       = "XRay"
    actions   = ["xray:PutTraceSegments", "s3:GetObject"]
    resources = ["*"]
  }
}
"""


def test_iam_checks_catch_wildcards(tmp_path: Path) -> None:
    bad = policy_statements(_write(tmp_path, BAD_POLICY))
    actions = wildcard_action_violations(bad)
    assert "bad/Admin: action '*'" in actions
    assert "bad/AllOfS3: service-wide action s3:*" in actions
    resources = wildcard_resource_violations(bad)
    assert "bad/Admin: resource '*' is not on the allow-list" in resources
    assert "bad/XRay: resource '*' is not on the allow-list" in resources
    assert "lambda_common/XRay: ['s3:GetObject'] on '*' beyond the allow-list" in resources


def test_environment_check_catches_a_password(tmp_path: Path) -> None:
    hcl = _write(
        tmp_path,
        """
resource "aws_ecs_task_definition" "bad" {
  container_definitions = jsonencode([{
    name        = "x"
    environment = [{ name = "PGPASSWORD", value = "hunter2" }]
  }])
}
locals {
  container = {
    environment = [{
      name  = "DB_URL"
      value = data.aws_secretsmanager_secret_version.db.secret_string
    }]
    secrets     = [{ name = "X", valueFrom = "arn" }]
  }
}
""",
    )
    violations = ecs_environment_violations(hcl)
    assert any("PGPASSWORD" in v for v in violations), violations
    assert any("DB_URL takes a secret value" in v for v in violations), violations
    assert any("container 'secrets'" in v for v in violations), violations


def test_override_check_catches_unknown_and_secret_names() -> None:
    definition = {
        "States": {
            "Dump": {
                "Parameters": {
                    "Overrides": {
                        "ContainerOverrides": [
                            {"Environment": [{"Name": "PGPASSWORD", "Value.$": "$.x"}]},
                            {"Environment": [{"Name": "PGAUTODUMPER_BUCKET", "Value": "b"}]},
                        ]
                    }
                }
            }
        }
    }
    assert asl_override_violations(definition) == ["container override environment 'PGPASSWORD'"]


def test_object_lock_check_catches_a_missing_configuration(tmp_path: Path) -> None:
    hcl = _write(
        tmp_path,
        """
resource "aws_s3_bucket" "locked" {
  object_lock_enabled = true
}
resource "aws_s3_bucket" "switched" {
  object_lock_enabled = var.enable_object_lock
}
resource "aws_s3_bucket_object_lock_configuration" "switched" {
  count  = var.create_bucket ? 1 : 0
  bucket = aws_s3_bucket.switched.id
  rule {
    default_retention {
      mode = "GOVERNANCE"
    }
  }
}
""",
    )
    violations = object_lock_violations(hcl)
    assert "aws_s3_bucket.locked: object_lock_enabled without a lock configuration" in violations
    assert any("count does not follow" in v for v in violations), violations
    assert any("no default retention" in v for v in violations), violations


################################################################################
# The ASL template and the module agree on the placeholders
################################################################################


def _templatefile_vars() -> set[str]:
    text = (MODULE / "sfn.tf").read_text()
    body = text[text.index("templatefile(") : text.index("})", text.index("templatefile("))]
    return set(re.findall(r"^\s+([a-z_]+)\s+=", body, re.MULTILINE))


def test_templatefile_supplies_exactly_the_asl_placeholders() -> None:
    path = STATE_MACHINE / "backup.asl.json"
    if not path.exists():
        pytest.skip("SKIPPED: state_machine/backup.asl.json is not written yet")
    text = path.read_text()
    placeholders = set(re.findall(r"\$\{([a-z_]+)\}", text))
    assert placeholders == _templatefile_vars()
    rendered = re.sub(r"\$\{([a-z_]+)\}", lambda m: f"dummy-{m.group(1)}", text)
    json.loads(rendered)  # renders to valid JSON


################################################################################
# The vault: the primary account cannot delete there or shorten retention
################################################################################

VAULT_PLAN = REPO / "tests" / "terraform" / "vault_plan"
PRIMARY_ACCOUNT = "111111111111"
VAULT_PLAN_VERIFY_ROLE = "arn:aws:iam::111111111111:role/pgautodumper-task-0001"


@pytest.fixture(scope="module")
def vault_policies(terraform: Terraform, module_copy: Path, moto_server: str) -> dict:
    """modules/vault's bucket and key policies as Terraform renders them (a plan)."""
    import shutil

    directory = module_copy.parent / "tests" / "terraform" / "vault_plan"
    shutil.copytree(VAULT_PLAN, directory)
    assert (
        terraform.run("init", "-backend=false", cwd=directory, label="init vault plan").returncode
        == 0
    )
    plan = terraform.run(
        "plan", "-refresh=false", "-out=plan.bin", f"-var=moto_endpoint={moto_server}",
        cwd=directory, label="plan vault",
    )  # fmt: skip
    assert plan.returncode == 0, plan.stdout[-3000:] + plan.stderr[-3000:]
    shown = json.loads(terraform.run("show", "-json", "plan.bin", cwd=directory).stdout)
    rendered = {}
    for change in shown["resource_changes"]:
        after = change["change"]["after"] or {}
        if change["type"] == "aws_s3_bucket_policy":
            rendered["bucket"] = json.loads(after["policy"])
        if change["type"] == "aws_kms_key":
            rendered["key"] = json.loads(after["policy"])
        if change["type"] == "aws_s3_bucket_object_lock_configuration":
            rendered["lock"] = after["rule"][0]["default_retention"][0]
    return rendered


def test_primary_account_cannot_delete_or_shorten_retention_in_the_vault(
    vault_policies: dict,
) -> None:
    assert vault_policies["lock"]["mode"] == "COMPLIANCE"
    assert (
        vault_violations(
            vault_policies["bucket"],
            vault_policies["key"],
            "arn:aws:s3:::pgautodumper-vault-plan",
            PRIMARY_ACCOUNT,
            "backups/orders/2026/01/31/20260131T021500Z-abc.dump.zst",
        )
        == []
    )
    # A verify run takes no lock: not even a delete marker on one.
    assert _denied_for_account(
        vault_policies["bucket"], "s3:DeleteObject",
        "arn:aws:s3:::pgautodumper-vault-plan/backups/orders/.lock", PRIMARY_ACCOUNT,
    )  # fmt: skip
    # The vault account itself keeps administering its key.
    assert not _denied_for_account(
        vault_policies["key"], "kms:ScheduleKeyDeletion", "*", "210987654321"
    )


def test_a_vault_verify_run_may_only_list_read_and_add_its_verdict(vault_policies: dict) -> None:
    """What modules/vault grants verify_role_arns: the allowances of mode "verify"."""
    bucket, key = vault_policies["bucket"], vault_policies["key"]
    arn, role = "arn:aws:s3:::pgautodumper-vault-plan", VAULT_PLAN_VERIFY_ROLE
    for path in VAULT_VERDICT_KEYS:
        assert _allowed(bucket, "s3:PutObject", f"{arn}/{path}", role), path
        assert not _denied_for_account(bucket, "s3:PutObject", f"{arn}/{path}", PRIMARY_ACCOUNT)
    for path in VAULT_BACKUP_KEYS:
        assert _allowed(bucket, "s3:GetObject", f"{arn}/{path}", role), path
        assert not _allowed(bucket, "s3:PutObject", f"{arn}/{path}", role), path
    assert _allowed(bucket, "s3:ListBucket", arn, role)
    (listing,) = [s for s in bucket["Statement"] if s.get("Sid") == "VerifyRunLists"]
    assert listing["Condition"]["StringLike"]["s3:prefix"] == "backups/*"
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert _allowed(key, action, "*", role), action
        assert not _denied_for_account(key, action, "*", PRIMARY_ACCOUNT), action
    # Another primary-account role gets nothing.
    other = "arn:aws:iam::111111111111:role/admin"
    assert not _allowed(bucket, "s3:GetObject", f"{arn}/{VAULT_BACKUP_KEYS[0]}", other)
    assert not _allowed(bucket, "s3:PutObject", f"{arn}/{VAULT_VERDICT_KEYS[0]}", other)


def test_primary_replication_never_replicates_deletes(module_hcl: dict, statements) -> None:
    actions = {a for st in statements if st.document == "vault_replication" for a in st.actions}
    assert "s3:ReplicateObject" in actions
    assert not {a for a in actions if "Delete" in a}, actions
    replication = blocks(module_hcl, "resource", "aws_s3_bucket_replication_configuration")["vault"]
    rule = replication["rule"][0]
    assert unquote(rule["delete_marker_replication"][0]["status"]) == "Disabled"
    criteria = rule["source_selection_criteria"][0]
    assert unquote(criteria["replica_modifications"][0]["status"]) == "Disabled"


def test_vault_check_catches_a_policy_that_lets_the_primary_delete() -> None:
    bucket = "arn:aws:s3:::v"
    lax = {"Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{PRIMARY_ACCOUNT}:root"},
         "Action": "s3:*", "Resource": [bucket, f"{bucket}/*"]},
        # A deny that only holds without TLS is no guarantee.
        {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": f"{bucket}/*",
         "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
        # Denies deletes of the wrong bucket.
        {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObjectVersion",
         "Resource": "arn:aws:s3:::other/*",
         "Condition": {"StringEquals": {"aws:PrincipalAccount": PRIMARY_ACCOUNT}}},
    ]}  # fmt: skip
    key = {"Statement": [
        {"Effect": "Deny", "Principal": "*",
         "NotAction": ["kms:Decrypt", "kms:ScheduleKeyDeletion"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:PrincipalAccount": PRIMARY_ACCOUNT}}},
    ]}  # fmt: skip
    violations = vault_violations(lax, key, bucket, PRIMARY_ACCOUNT, "backups/x.dump.zst")
    backup = f"{bucket}/backups/x.dump.zst"
    assert f"bucket policy: s3:DeleteObjectVersion on {backup} not denied to 111111111111" in (
        violations
    )
    assert f"key policy: kms:ScheduleKeyDeletion not denied to {PRIMARY_ACCOUNT}" in violations
    assert f"key policy: kms:PutKeyPolicy not denied to {PRIMARY_ACCOUNT}" not in violations


################################################################################
# The primary's side: what its roles may do in the vault (rendered by the scale plan,
# which has a vault verify schedule), and what the vault schedules send
################################################################################

SCALE_VAULT = "arn:aws:s3:::pgautodumper-scale-limits-vault-0123456789abcdef0123456789abcde"
SCALE_VAULT_KEY = "arn:aws:kms:eu-west-1:210987654321:key/4123abcd-0123-4567-89ab-0123456789ab"
# Role -> (keys it must be able to read in the vault, keys it must not).
VAULT_READERS = {
    "preflight": ([f"{VAULT_STEM}.manifest.json"], [f"{VAULT_STEM}.data.dump.zst"]),
    "task": (VAULT_BACKUP_KEYS[:6], []),
    "record_verify": ([f"{VAULT_STEM}.verified.json"], [f"{VAULT_STEM}.dump.zst"]),
    "task_failure": ([f"{VAULT_STEM}.verify.outcome.json"], [f"{VAULT_STEM}.dump.zst"]),
    "release_lock": (["backups/orders/.lock"], [f"{VAULT_STEM}.dump.zst"]),
}
VAULT_WRITE_ACTIONS = [
    "s3:PutObject", "s3:AbortMultipartUpload", "s3:DeleteObject", "s3:DeleteObjectVersion",
    "s3:PutObjectRetention", "s3:BypassGovernanceRetention", "s3:PutObjectLegalHold",
    "s3:PutObjectTagging", "s3:PutObjectAcl", "s3:RestoreObject",
]  # fmt: skip


@pytest.fixture(scope="module")
def role_policies(scale_plan: dict) -> dict[str, dict]:
    """Role ("task", "preflight", ...) -> its rendered inline policy (known at plan time)."""
    found = {}
    for change in scale_plan["resource_changes"]:
        if change["type"] != "aws_iam_role_policy":
            continue
        policy = (change["change"]["after"] or {}).get("policy")
        if policy is not None:
            found[str(change.get("index") or change["name"])] = json.loads(policy)
    assert {"task", "preflight", "prune", "release_lock", "freshness"} <= set(found), found
    return found


def test_primary_roles_never_write_delete_or_shorten_retention_in_the_vault(
    role_policies: dict[str, dict],
) -> None:
    for role, policy in role_policies.items():
        for action in VAULT_WRITE_ACTIONS + VAULT_FORBIDDEN_S3:
            for path in VAULT_BACKUP_KEYS:
                assert not _allowed(policy, action, f"{SCALE_VAULT}/{path}"), (role, action, path)
            assert not _allowed(policy, action, SCALE_VAULT), (role, action)
        for action in [*VAULT_FORBIDDEN_KMS, "kms:ReEncryptFrom"]:
            assert not _allowed(policy, action, SCALE_VAULT_KEY), (role, action)
        # S3 Replication encrypts the replicas; nothing else encrypts with the vault key.
        if role != "vault_replication":
            assert not _allowed(policy, "kms:Encrypt", SCALE_VAULT_KEY), role


def test_only_the_task_adds_verdicts_to_the_vault(role_policies: dict[str, dict]) -> None:
    writers = {
        role
        for role, policy in role_policies.items()
        for path in VAULT_VERDICT_KEYS
        if _allowed(policy, "s3:PutObject", f"{SCALE_VAULT}/{path}")
    }
    assert writers == {"task"}
    task = role_policies["task"]
    for path in VAULT_VERDICT_KEYS:
        assert _allowed(task, "s3:PutObject", f"{SCALE_VAULT}/{path}"), path
    # One PutObject each: no multipart upload in the vault.
    assert not _allowed(task, "s3:AbortMultipartUpload", f"{SCALE_VAULT}/{VAULT_VERDICT_KEYS[0]}")
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        assert _allowed(task, action, SCALE_VAULT_KEY), action


def test_vault_verify_roles_read_what_mode_verify_reads(role_policies: dict[str, dict]) -> None:
    for role, (readable, unreadable) in VAULT_READERS.items():
        policy = role_policies[role]
        for path in readable:
            assert _allowed(policy, "s3:GetObject", f"{SCALE_VAULT}/{path}"), (role, path)
        for path in unreadable:
            assert not _allowed(policy, "s3:GetObject", f"{SCALE_VAULT}/{path}"), (role, path)
        listing = [
            st for st in policy["Statement"]
            if "s3:ListBucket" in _listed(st["Action"]) and SCALE_VAULT in _listed(st["Resource"])
        ]  # fmt: skip
        assert listing and all(
            st["Condition"]["StringLike"]["s3:prefix"] == "backups/*" for st in listing
        ), role
        assert _allowed(policy, "kms:Decrypt", SCALE_VAULT_KEY), role
    # The roles of mode "backup" alone never touch the vault.
    for role in ("record", "prune", "notify", "lookup_secret", "freshness", "scheduler"):
        policy = role_policies[role]
        for path in VAULT_BACKUP_KEYS + VAULT_VERDICT_KEYS:
            assert not _allowed(policy, "s3:GetObject", f"{SCALE_VAULT}/{path}"), (role, path)
        assert not _allowed(policy, "s3:ListBucket", SCALE_VAULT), role
        assert not _allowed(policy, "kms:Decrypt", SCALE_VAULT_KEY), role


def test_freshness_only_lists_and_reads_manifests_and_verdicts(
    role_policies: dict[str, dict],
) -> None:
    policy = role_policies["freshness"]
    bucket = "arn:aws:s3:::pgautodumper-scale-limits-backups-0123456789abcdef0123456789abc"
    assert _allowed(policy, "s3:ListBucket", bucket)
    for path in (f"{VAULT_STEM}.manifest.json", f"{VAULT_STEM}.verified.json"):
        assert _allowed(policy, "s3:GetObject", f"{bucket}/{path}"), path
    for path in (f"{VAULT_STEM}.dump.zst", "backups/orders/.lock"):
        assert not _allowed(policy, "s3:GetObject", f"{bucket}/{path}"), path
    for action in VAULT_WRITE_ACTIONS:
        assert not _allowed(policy, action, f"{bucket}/{VAULT_STEM}.verified.json"), action
    statements = {st["Sid"]: st for st in policy["Statement"]}
    assert statements["BucketKey"]["Action"] == "kms:Decrypt"
    assert statements["BucketKey"]["Condition"]["StringEquals"]["kms:ViaService"] == (
        "s3.eu-central-1.amazonaws.com"
    )


def test_the_vault_schedule_sends_a_verify_only_request(scale_plan: dict) -> None:
    from pgautodumper.contract import BackupRequest

    inputs = {}
    for change in scale_plan["resource_changes"]:
        if change["type"] == "aws_scheduler_schedule":
            after = change["change"]["after"]
            inputs[after["name"]] = json.loads(after["target"][0]["input"])
    assert len(inputs) == 300
    vault_bucket = SCALE_VAULT.split(":::")[1]
    for name, request in inputs.items():
        BackupRequest.model_validate(request)  # the contract accepts what the schedule sends
        database = request["name"]
        if name.endswith("-vault"):
            assert request["mode"] == "verify" and request["bucket"] == vault_bucket, name
        else:
            assert request["mode"] == "backup" and request["bucket"] != vault_bucket, name
            assert request["verify"] is name.endswith("-verify"), name
        threshold = 1048576 if database == "k" + "x" * 56 else 67108864
        assert request["stream_threshold_bytes"] == threshold, name


SCALE_CA_SECRET = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:pgautodumper/ca-AbCdEf"
SCALE_CA_PARAMETER = "arn:aws:ssm:eu-central-1:123456789012:parameter/pgautodumper/ca"


def test_only_the_roles_that_connect_read_the_ca_certificates(
    role_policies: dict[str, dict], scale_plan: dict
) -> None:
    for role, policy in role_policies.items():
        connects = role in ("preflight", "task")
        assert _allowed(policy, "secretsmanager:GetSecretValue", SCALE_CA_SECRET) == connects, role
        assert _allowed(policy, "ssm:GetParameter", SCALE_CA_PARAMETER) == connects, role
    # and the schedules send the ARN the task and preflight read
    requests = [
        json.loads(change["change"]["after"]["target"][0]["input"])
        for change in scale_plan["resource_changes"]
        if change["type"] == "aws_scheduler_schedule"
    ]
    assert {r.get("ssl_root_cert") for r in requests} == {SCALE_CA_SECRET, SCALE_CA_PARAMETER, None}
