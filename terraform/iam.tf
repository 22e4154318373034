################################################################################
# One role per principal, each allowed exactly the calls its code makes.
# Resources are ARNs; "*" appears only for actions that have no resource level
# (X-Ray, ENI/VPC describes, log delivery, ECR auth). tests/terraform checks
# that list.
################################################################################

locals {
  database_names = sort(keys(var.databases))

  # One pattern per bucket, not one ARN per database: the policies stay the same
  # size whatever the number of databases (IAM counts every character of a role's
  # inline policies against 10,240). "*" stays inside the prefix and matches only
  # keys named .lock or .preflight-*, or ending in the suffix. Locks and probes are
  # written in the module's own bucket only: a vault verify run takes no lock.
  lock_arn      = "${local.bucket_arn}/${local.key_prefix}*/.lock"
  probe_arn     = "${local.bucket_arn}/${local.key_prefix}*/.preflight-*"
  manifests_arn = "${local.bucket_arn}/${local.key_prefix}*.manifest.json"
  verdicts_arn  = "${local.bucket_arn}/${local.key_prefix}*.verified.json"

  # What each role reads in the vault during a vault verify run (mode "verify", which the
  # state machine runs as LookupSecret, Preflight, Verify, RecordVerify, ReleaseLock,
  # Notify, or ExplainVerifyFailure and RecordFailedVerify on a failed verify):
  # vault_read below grants exactly these, with ListBucket and the vault key's Decrypt.
  vault_reads = local.vault_verify ? {
    # The newest manifest; the backup's objects; the verdict; a failed verify's outcome.
    preflight     = [for arn in local.vault_verify_arns : "${arn}/${local.key_prefix}*.manifest.json"]
    task          = local.vault_backups_arns
    record_verify = [for arn in local.vault_verify_arns : "${arn}/${local.key_prefix}*.verified.json"]
    task_failure  = [for arn in local.vault_verify_arns : "${arn}/${local.key_prefix}*.verify.outcome.json"]
    # ReleaseLock reads the name's lock in the request's bucket; in mode verify none exists.
    release_lock = [for arn in local.vault_verify_arns : "${arn}/${local.key_prefix}*/.lock"]
  } : {}
  # The only keys anything of this account writes in the vault: the verify task's verdict
  # and, when it fails, its outcome document (layout.py: <stem>.verified.json,
  # <stem>.verify.outcome.json). COMPLIANCE Object Lock makes each an immutable version.
  vault_verdict_write_arns = flatten([
    for arn in local.vault_verify_arns : ["${arn}/${local.key_prefix}*.verified.json", "${arn}/${local.key_prefix}*.verify.outcome.json"]
  ])
  # S3 uses the vault key for the caller, in the vault's region.
  vault_key_via_s3 = local.vault_verify ? "s3.${local.vault_region}.${local.dns_suffix}" : null

  # The database secrets, in managed policies of at most secret_arns_per_policy
  # databases each (a managed policy holds 6,144 characters; variables.tf bounds a
  # secret ARN's length so that 20 always fit): the inline policies stay small
  # whatever the number of databases. Chunked by database name, which is known at
  # plan time even when the ARNs are not.
  secret_arns_per_policy = 20
  secret_policy_chunks = [
    for names in chunklist(local.database_names, local.secret_arns_per_policy) :
    distinct([for name in names : var.databases[name].secret_arn])
  ]
  # The roles that read the database secrets themselves.
  secret_reader_roles = {
    lookup_secret = aws_iam_role.lambda["lookup_secret"].name
    preflight     = aws_iam_role.lambda["preflight"].name
    task          = aws_iam_role.task.name
  }

  # IAM actions per service, kept as data.
  actions = {
    read_secret     = ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"]
    bucket_key_read = ["kms:Decrypt"]
    bucket_key_rw   = ["kms:Decrypt", "kms:GenerateDataKey"]
    xray            = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    write_logs      = ["logs:CreateLogStream", "logs:PutLogEvents"]
    multipart_write = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    prune_read      = ["s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold"]
    prune_delete    = ["s3:DeleteObject", "s3:DeleteObjectVersion"]
    prune_list      = ["s3:ListBucket", "s3:ListBucketVersions"]
    # Lambda creates and removes the preflight function's ENIs with its role.
    eni_describe = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
    eni_manage   = ["ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
    ecr_pull     = ["ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"]
    # What the Step Functions console/API needs to deliver logs; none of these
    # supports resource-level permissions.
    log_delivery = [
      "logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery", "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries", "logs:PutResourcePolicy", "logs:DescribeResourcePolicies", "logs:DescribeLogGroups",
    ]
    ecs_sync_rule = ["events:PutTargets", "events:PutRule", "events:DescribeRule"]
  }

  # s3:prefix for ListBucket: only keys under the backup prefix.
  list_prefixes = [local.key_prefix == "" ? "*" : "${local.key_prefix}*"]

  ecr_image = regex("^(?:(?P<account>[0-9]{12})\\.dkr\\.ecr\\.(?P<region>[a-z0-9-]+)\\.amazonaws\\.com(?:\\.cn)?/(?P<repository>[^:@]+))?", var.task_image)
  ecr_repository_arn = local.ecr_image.account == null ? null : (
    "arn:${local.partition}:ecr:${local.ecr_image.region}:${local.ecr_image.account}:repository/${local.ecr_image.repository}"
  )

  ecs_sync_rule_arn = "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/StepFunctionsGetEventsForECSTaskRule"
}

################################################################################
# Trust policies
################################################################################

data "aws_iam_policy_document" "assume" {
  for_each = {
    lambda    = "lambda.${local.dns_suffix}"
    ecs_tasks = "ecs-tasks.${local.dns_suffix}"
    states    = "states.${local.dns_suffix}"
    scheduler = "scheduler.${local.dns_suffix}"
    s3        = "s3.${local.dns_suffix}"
  }

  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = [each.value]
    }
    # Confused-deputy guard: only this account's resources may use the role.
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

################################################################################
# Lambda roles
################################################################################

data "aws_iam_policy_document" "lambda_common" {
  for_each = local.functions

  statement {
    sid       = "WriteOwnLogs"
    actions   = local.actions.write_logs
    resources = ["${local.log_group_arn_prefix}${local.lambda_log_group_names[each.key]}:*"]
  }

  statement {
    sid       = "XRay"
    actions   = local.actions.xray
    resources = ["*"]
  }
}

# The secrets themselves are read through the managed policies below (read_secrets),
# attached to every secret reader; this document holds what does not grow with them.
data "aws_iam_policy_document" "lookup_secret" {
  dynamic "statement" {
    for_each = length(var.secret_kms_key_arns) > 0 ? [1] : []
    content {
      sid       = "DecryptDatabaseSecrets"
      actions   = ["kms:Decrypt"]
      resources = var.secret_kms_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        # An SSM SecureString CA (ssl_root_cert) is decrypted through SSM.
        values = concat(
          ["secretsmanager.${local.region}.${local.dns_suffix}"],
          length(local.ca_cert_arns_by_service.ssm) > 0 ? ["ssm.${local.region}.${local.dns_suffix}"] : [],
        )
      }
    }
  }
}

# Every role that reads a key which may be absent (the lock, a manifest, a verdict) lists
# the module's prefixes: without s3:ListBucket S3 answers 403, not 404, for a missing key
# (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html, "Permissions").
data "aws_iam_policy_document" "list_backups" {
  statement {
    sid       = "ListBackups"
    actions   = ["s3:ListBucket"]
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.list_prefixes
    }
  }
}

# The CA certificates of self-managed servers (databases[*].ssl_root_cert): read by the
# preflight Lambda and the task, which connect with sslmode verify-ca/verify-full.
data "aws_iam_policy_document" "read_ca_certs" {
  dynamic "statement" {
    for_each = {
      for service, read in { secretsmanager = "secretsmanager:GetSecretValue", ssm = "ssm:GetParameter" } :
      service => read if length(local.ca_cert_arns_by_service[service]) > 0
    }
    content {
      sid       = "ReadCaCertificates${title(statement.key)}"
      actions   = [statement.value]
      resources = local.ca_cert_arns_by_service[statement.key]
    }
  }
}

data "aws_iam_policy_document" "read_secrets" {
  count = length(local.secret_policy_chunks)

  statement {
    sid       = "ReadDatabaseSecrets"
    actions   = local.actions.read_secret
    resources = local.secret_policy_chunks[count.index]
  }
}

resource "aws_iam_policy" "read_secrets" {
  count = length(local.secret_policy_chunks)

  name_prefix = "${var.name_prefix}-secrets-${count.index}-"
  description = "pgautodumper: read the database secrets (part ${count.index + 1} of ${length(local.secret_policy_chunks)})"
  policy      = data.aws_iam_policy_document.read_secrets[count.index].json
  tags        = local.tags
}

resource "aws_iam_role_policy_attachment" "read_secrets" {
  for_each = {
    for pair in setproduct(keys(local.secret_reader_roles), range(length(local.secret_policy_chunks))) :
    "${pair[0]}-${pair[1]}" => { role = local.secret_reader_roles[pair[0]], chunk = pair[1] }
  }

  role       = each.value.role
  policy_arn = aws_iam_policy.read_secrets[each.value.chunk].arn
}

# What a role reads in the vault during a vault verify run (local.vault_reads): the keys,
# ListBucket (a missing key is then 404, not 403) and Decrypt through S3 with the vault
# key. Nothing here writes or deletes.
data "aws_iam_policy_document" "vault_read" {
  for_each = local.vault_reads

  statement {
    sid       = "ReadVault"
    actions   = ["s3:GetObject"]
    resources = each.value
  }

  statement {
    sid       = "ListVault"
    actions   = ["s3:ListBucket"]
    resources = local.vault_verify_arns
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.list_prefixes
    }
  }

  statement {
    sid       = "DecryptWithVaultKey"
    actions   = ["kms:Decrypt"]
    resources = local.vault_key_arns
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = [local.vault_key_via_s3]
    }
  }
}

data "aws_iam_policy_document" "preflight" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.lookup_secret.json, data.aws_iam_policy_document.read_ca_certs.json],
    [data.aws_iam_policy_document.list_backups.json],
    [for name, document in data.aws_iam_policy_document.vault_read : document.json if name == "preflight"],
  )

  statement {
    sid       = "TakeLockAndProbeWrites"
    actions   = ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"]
    resources = [local.lock_arn, local.probe_arn]
  }

  # Mode "verify": the newest complete backup of the name, found by its manifest.
  statement {
    sid       = "ReadManifests"
    actions   = ["s3:GetObject"]
    resources = [local.manifests_arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_rw
    resources = [local.kms_key_arn]
  }

  # A lock whose execution has ended may be taken over.
  statement {
    sid       = "InspectLockHolder"
    actions   = ["states:DescribeExecution"]
    resources = [local.execution_arns]
  }

  statement {
    sid       = "DecryptExecutionData"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:states:stateMachineArn"
      values   = [local.state_machine_arn]
    }
  }

  statement {
    sid       = "DescribeNetworkInterfaces"
    actions   = local.actions.eni_describe
    resources = ["*"]
  }

  statement {
    sid     = "CreateNetworkInterfaces"
    actions = ["ec2:CreateNetworkInterface"]
    resources = concat(
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
      [for id in var.subnet_ids : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${id}"],
      ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/*"],
    )
  }

  statement {
    sid       = "ManageNetworkInterfaces"
    actions   = local.actions.eni_manage
    resources = ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"]
  }
}

# Record reads the manifest of the backup just taken (mode "backup": the module's own
# bucket only).
data "aws_iam_policy_document" "record" {
  source_policy_documents = [data.aws_iam_policy_document.list_backups.json]

  statement {
    sid       = "ReadManifests"
    actions   = ["s3:GetObject"]
    resources = [local.backups_arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_read
    resources = [local.kms_key_arn]
  }
}

# RecordVerify reads the verdict the verify task wrote (which may be absent): in the
# module's bucket, and in the vault after a vault verify run.
data "aws_iam_policy_document" "record_verify" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.record.json],
    [for name, document in data.aws_iam_policy_document.vault_read : document.json if name == "record_verify"],
  )
}

# ExplainDumpFailure / ExplainVerifyFailure read a task's outcome document (which may be
# absent: ListBucket makes S3 answer 404, not 403) and find a timed-out run's task.
data "aws_iam_policy_document" "task_failure" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.record.json],
    [for name, document in data.aws_iam_policy_document.vault_read : document.json if name == "task_failure"],
  )

  statement {
    sid       = "FindTasksOfRun"
    actions   = ["ecs:ListTasks"]
    resources = ["*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }
}

# Prune runs in mode "backup" only, in the module's own bucket: never in the vault.
data "aws_iam_policy_document" "prune" {
  statement {
    sid       = "ListBackups"
    actions   = local.actions.prune_list
    resources = [local.bucket_arn]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = local.list_prefixes
    }
  }

  statement {
    sid       = "ReadBackups"
    actions   = local.actions.prune_read
    resources = [local.backups_arn]
  }

  statement {
    sid       = "DeleteExpiredBackups"
    actions   = local.actions.prune_delete
    resources = [local.backups_arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_read
    resources = [local.kms_key_arn]
  }

  # Retention must never shorten Object Lock, whatever else grants it.
  statement {
    sid       = "NeverBypassObjectLock"
    effect    = "Deny"
    actions   = ["s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold"]
    resources = flatten([for arn in local.bucket_arns : [arn, "${arn}/*"]])
  }
}

# Deletes only the module's own bucket's locks. In the vault (mode "verify" takes no lock)
# it only looks, through vault_read.
data "aws_iam_policy_document" "release_lock" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.list_backups.json],
    [for name, document in data.aws_iam_policy_document.vault_read : document.json if name == "release_lock"],
  )

  statement {
    sid       = "ReleaseLock"
    actions   = ["s3:GetObject", "s3:DeleteObject"]
    resources = [local.lock_arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_read
    resources = [local.kms_key_arn]
  }
}

# Freshness (hourly, freshness.tf) lists the module's bucket and reads each name's newest
# manifest and verdict; it writes nothing.
data "aws_iam_policy_document" "freshness" {
  source_policy_documents = [data.aws_iam_policy_document.list_backups.json]

  statement {
    sid       = "ReadManifestsAndVerdicts"
    actions   = ["s3:GetObject"]
    resources = [local.manifests_arn, local.verdicts_arn]
  }

  # Only as S3 decrypts the objects for it (SSE-KMS with a bucket key):
  # https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service
  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_read
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }
}

data "aws_iam_policy_document" "notify" {
  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = [local.alerts_topic_arn]
  }

  statement {
    sid       = "EncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  dynamic "statement" {
    for_each = var.slack_webhook_secret_arn == null ? [] : [var.slack_webhook_secret_arn]
    content {
      sid       = "ReadSlackWebhook"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }

  # A webhook secret under a customer-managed key: decrypt through Secrets Manager only,
  # as for the database secrets (https://docs.aws.amazon.com/kms/latest/developerguide/conditions-kms.html#conditions-kms-via-service).
  dynamic "statement" {
    for_each = var.slack_webhook_secret_arn != null && var.slack_webhook_kms_key_arn != null ? [var.slack_webhook_kms_key_arn] : []
    content {
      sid       = "DecryptSlackWebhook"
      actions   = ["kms:Decrypt"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["secretsmanager.${local.region}.${local.dns_suffix}"]
      }
    }
  }
}

locals {
  lambda_policies = {
    lookup_secret = data.aws_iam_policy_document.lookup_secret.json
    preflight     = data.aws_iam_policy_document.preflight.json
    record        = data.aws_iam_policy_document.record.json
    record_verify = data.aws_iam_policy_document.record_verify.json
    task_failure  = data.aws_iam_policy_document.task_failure.json
    prune         = data.aws_iam_policy_document.prune.json
    release_lock  = data.aws_iam_policy_document.release_lock.json
    notify        = data.aws_iam_policy_document.notify.json
    freshness     = data.aws_iam_policy_document.freshness.json
  }
}

data "aws_iam_policy_document" "lambda" {
  for_each = local.functions

  source_policy_documents = [
    data.aws_iam_policy_document.lambda_common[each.key].json,
    local.lambda_policies[each.key],
  ]
}

resource "aws_iam_role" "lambda" {
  for_each = local.functions

  name_prefix        = substr("${local.function_names[each.key]}-", 0, 38)
  description        = "pgautodumper ${each.key} Lambda"
  assume_role_policy = data.aws_iam_policy_document.assume["lambda"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "lambda" {
  for_each = local.functions

  name   = each.key
  role   = aws_iam_role.lambda[each.key].id
  policy = data.aws_iam_policy_document.lambda[each.key].json
}

################################################################################
# Fargate: the task role (what pg_dump/verify do) and the execution role (what
# ECS does to start the container) are separate.
################################################################################

data "aws_iam_policy_document" "task" {
  source_policy_documents = concat(
    [data.aws_iam_policy_document.lookup_secret.json, data.aws_iam_policy_document.read_ca_certs.json],
    [data.aws_iam_policy_document.list_backups.json],
    [for name, document in data.aws_iam_policy_document.vault_read : document.json if name == "task"],
  )

  # Backups (and a verify run's verdict) are written in the module's own bucket only.
  statement {
    sid       = "UploadBackups"
    actions   = local.actions.multipart_write
    resources = [local.backups_arn]
  }

  # verify streams the dump back and writes its verdict next to it.
  statement {
    sid       = "ReadBackups"
    actions   = ["s3:GetObject"]
    resources = [local.backups_arn]
  }

  statement {
    sid       = "BucketKey"
    actions   = local.actions.bucket_key_rw
    resources = [local.kms_key_arn]
  }

  # A vault verify run adds its verdict (or, on failure, its outcome) to the vault and
  # nothing else: one PutObject each, no multipart upload, no delete.
  dynamic "statement" {
    for_each = local.vault_verify ? [1] : []
    content {
      sid       = "WriteVaultVerdicts"
      actions   = ["s3:PutObject"]
      resources = local.vault_verdict_write_arns
    }
  }

  # Uploading under SSE-KMS needs kms:GenerateDataKey, downloading kms:Decrypt (in
  # vault_read): https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html,
  # "Permissions"; the vault's key policy grants the same to these roles only.
  dynamic "statement" {
    for_each = local.vault_verify ? [1] : []
    content {
      sid       = "EncryptVaultVerdicts"
      actions   = ["kms:GenerateDataKey"]
      resources = local.vault_key_arns
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = [local.vault_key_via_s3]
      }
    }
  }
}

resource "aws_iam_role" "task" {
  name_prefix        = substr("${var.name_prefix}-task-", 0, 38)
  description        = "pgautodumper dump/verify task"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs_tasks"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "task" {
  name   = "task"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.task.json
}

data "aws_iam_policy_document" "task_execution" {
  statement {
    sid       = "WriteTaskLogs"
    actions   = local.actions.write_logs
    resources = ["${local.log_group_arn_prefix}${local.task_log_group_name}:*"]
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [local.ecr_repository_arn]
    content {
      sid       = "PullTaskImage"
      actions   = local.actions.ecr_pull
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = local.ecr_repository_arn == null ? [] : [1]
    content {
      sid       = "EcrLogin"
      actions   = ["ecr:GetAuthorizationToken"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role" "task_execution" {
  name_prefix        = substr("${var.name_prefix}-exec-", 0, 38)
  description        = "pgautodumper: ECS pulls the image and ships logs"
  assume_role_policy = data.aws_iam_policy_document.assume["ecs_tasks"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "task_execution" {
  name   = "task-execution"
  role   = aws_iam_role.task_execution.id
  policy = data.aws_iam_policy_document.task_execution.json
}

################################################################################
# Step Functions
################################################################################

data "aws_iam_policy_document" "state_machine" {
  # The workflow's functions; freshness is invoked by its hourly rule only.
  statement {
    sid       = "InvokeFunctions"
    actions   = ["lambda:InvokeFunction"]
    resources = flatten([for name, arn in local.function_arns : [arn, "${arn}:*"] if name != "freshness"])
  }

  statement {
    sid       = "RunTasks"
    actions   = ["ecs:RunTask"]
    resources = [for family in keys(local.task_definitions) : "arn:${local.partition}:ecs:${local.region}:${local.account_id}:task-definition/${var.name_prefix}-${family}:*"]
    condition {
      test     = "ArnEquals"
      variable = "ecs:cluster"
      values   = [local.cluster_arn]
    }
  }

  statement {
    sid       = "WatchTasks"
    actions   = ["ecs:StopTask", "ecs:DescribeTasks"]
    resources = ["arn:${local.partition}:ecs:${local.region}:${local.account_id}:task/${local.cluster_name}/*"]
  }

  statement {
    sid       = "PassTaskRoles"
    actions   = ["iam:PassRole"]
    resources = [aws_iam_role.task.arn, aws_iam_role.task_execution.arn]
    condition {
      test     = "StringEquals"
      variable = "iam:PassedToService"
      values   = ["ecs-tasks.${local.dns_suffix}"]
    }
  }

  # runTask.sync listens for task state changes through this managed rule.
  statement {
    sid       = "EcsSyncManagedRule"
    actions   = local.actions.ecs_sync_rule
    resources = [local.ecs_sync_rule_arn]
  }

  statement {
    sid       = "EncryptedExecutions"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:states:stateMachineArn"
      values   = [local.state_machine_arn]
    }
  }

  statement {
    sid       = "LogDelivery"
    actions   = local.actions.log_delivery
    resources = ["*"]
  }

  statement {
    sid       = "XRay"
    actions   = concat(local.actions.xray, ["xray:GetSamplingRules", "xray:GetSamplingTargets"])
    resources = ["*"]
  }
}

resource "aws_iam_role" "state_machine" {
  name_prefix        = substr("${var.name_prefix}-sfn-", 0, 38)
  description        = "pgautodumper backup state machine"
  assume_role_policy = data.aws_iam_policy_document.assume["states"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "state-machine"
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}

################################################################################
# EventBridge Scheduler
################################################################################

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "StartBackups"
    actions   = ["states:StartExecution"]
    resources = [local.state_machine_arn]
  }

  statement {
    sid       = "EncryptedExecutionInput"
    actions   = ["kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:EncryptionContext:aws:states:stateMachineArn"
      values   = [local.state_machine_arn]
    }
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [local.scheduler_dlq_arn]
  }

  # Schedules (their input) and the dead-letter queue are encrypted with the key.
  statement {
    sid       = "EncryptedSchedulesAndDeadLetterQueue"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }
}

resource "aws_iam_role" "scheduler" {
  name_prefix        = substr("${var.name_prefix}-sched-", 0, 38)
  description        = "pgautodumper: schedules start backup executions"
  assume_role_policy = data.aws_iam_policy_document.assume["scheduler"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "scheduler"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}
