data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  dns_suffix = data.aws_partition.current.dns_suffix

  tags = merge({ "pgautodumper:module" = "pgautodumper" }, var.tags)

  # The container both task definitions run; the ASL overrides its command/env by this name.
  container_name = "pgautodumper"

  # Names are known before the resources exist, so policies can name ARNs
  # without dependency cycles (the state machine depends on the functions).
  state_machine_name = "${var.name_prefix}-backup"
  state_machine_arn  = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.state_machine_name}"
  execution_arns     = "arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}:*"
  cluster_name       = var.name_prefix
  cluster_arn        = "arn:${local.partition}:ecs:${local.region}:${local.account_id}:cluster/${local.cluster_name}"
  alerts_topic_name  = "${var.name_prefix}-alerts"
  alerts_topic_arn   = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.alerts_topic_name}"
  scheduler_dlq_name = "${var.name_prefix}-scheduler-dlq"
  scheduler_dlq_arn  = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.scheduler_dlq_name}"

  # Log groups (logs.tf), by name: policies name them without waiting for them.
  log_group_arn_prefix   = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:"
  task_log_group_name    = "/aws/ecs/${var.name_prefix}"
  lambda_log_group_names = { for name, _ in local.functions : name => "/aws/lambda/${local.function_names[name]}" }

  kms_key_arn = var.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  # A given bucket name is known at plan time; only a generated one waits for the bucket.
  bucket_name     = var.bucket_name != null ? var.bucket_name : aws_s3_bucket.this[0].id
  bucket_arn      = "arn:${local.partition}:s3:::${local.bucket_name}"
  key_prefix      = var.bucket_prefix == "" ? "" : "${var.bucket_prefix}/"
  backups_arn     = "${local.bucket_arn}/${local.key_prefix}*"
  security_groups = var.create_security_group ? concat([aws_security_group.this[0].id], var.security_group_ids) : var.security_group_ids

  # The buckets the workflow's roles may use: the module's own and, with a vault verify
  # schedule, the vault (vault.tf). Same key layout, same prefix. Only reads, and the
  # verify task's verdicts, ever go to the vault (iam.tf); nothing is deleted there.
  vault_verify       = var.vault != null && try(var.vault.verify_schedule, null) != null
  vault_bucket_name  = var.vault == null ? null : split(":::", var.vault.bucket_arn)[1]
  vault_verify_arns  = local.vault_verify ? [var.vault.bucket_arn] : []
  vault_backups_arns = [for arn in local.vault_verify_arns : "${arn}/${local.key_prefix}*"]
  vault_key_arns     = local.vault_verify ? [var.vault.kms_key_arn] : []
  bucket_arns        = concat([local.bucket_arn], local.vault_verify_arns)

  secret_arns = distinct([for db in values(var.databases) : db.secret_arn])
  # The CAs of self-managed servers (databases[*].ssl_root_cert), by where they are kept.
  ca_cert_arns = distinct(compact([for db in values(var.databases) : db.ssl_root_cert]))
  ca_cert_arns_by_service = {
    secretsmanager = [for arn in local.ca_cert_arns : arn if split(":", arn)[2] == "secretsmanager"]
    ssm            = [for arn in local.ca_cert_arns : arn if split(":", arn)[2] == "ssm"]
  }

  # Where the functions' EMF metrics go (POWERTOOLS_METRICS_NAMESPACE): the alarms and the
  # dashboard read them there.
  metrics_namespace = "pgautodumper"
  # Dead-man's switch window of each database (alarms.tf, dashboard.tf).
  alarm_window_hours = { for name, db in var.databases : name => coalesce(db.alarm_window_hours, var.alarm_window_hours) }

  # What a schedule sends: a pgautodumper.contract.BackupRequest.
  backup_requests = {
    for name, db in var.databases : name => {
      name              = name
      secret_arn        = db.secret_arn
      bucket            = local.bucket_name
      prefix            = var.bucket_prefix
      mode              = "backup"
      verify            = false
      retention         = db.retention
      notify_on_success = db.notify_on_success
      sslmode           = db.sslmode
      ssl_root_cert     = db.ssl_root_cert
      task              = db.task
      jobs              = db.jobs
      # One name everywhere: the request field, the task input and the CLI's --lock-wait-timeout.
      lock_wait_timeout_seconds = db.lock_wait_timeout_seconds
      stream_threshold_bytes    = db.stream_threshold_bytes
    }
  }
  verify_requests = {
    for name, request in local.backup_requests : name => merge(request, { verify = true })
    if var.databases[name].enable_verify
  }
  # The vault verify run (vault.verify_schedule): mode "verify" restores the newest complete
  # backup of the name found in the vault bucket (the replicas) and writes its verdict
  # there. No dump, no lock, no prune (state_machine/backup.asl.json skips them in this
  # mode), so the run only reads the vault and adds <stem>.verified.json (or, on failure,
  # <stem>.verify.outcome.json) under COMPLIANCE Object Lock.
  vault_verify_requests = local.vault_verify ? {
    for name, request in local.backup_requests : name => merge(request, {
      bucket = local.vault_bucket_name
      mode   = "verify"
      verify = true
    })
  } : {}
}

check "bring_your_own_inputs" {
  assert {
    condition     = var.create_kms_key || var.kms_key_arn != null
    error_message = "kms_key_arn is required when create_kms_key is false."
  }
  assert {
    condition     = var.vault == null || var.create_bucket
    error_message = "vault replicates the bucket the module creates; with create_bucket = false configure replication on your own bucket."
  }
  assert {
    # IAM attaches at most 10 managed policies to a role by default (20 on request):
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_iam-quotas.html
    condition     = length(local.secret_policy_chunks) <= 10
    error_message = "More than 200 databases need more than 10 secret policies per role: raise the IAM quota 'Managed policies per role' (up to 20) first."
  }
  assert {
    condition     = var.create_bucket || !var.enable_object_lock
    error_message = "enable_object_lock applies only to a bucket the module creates; configure Object Lock on your own bucket yourself."
  }
  assert {
    condition     = var.create_bucket || var.bucket_name != null
    error_message = "bucket_name is required when create_bucket is false."
  }
  assert {
    condition     = !var.create_security_group || var.vpc_id != null
    error_message = "vpc_id is required when create_security_group is true."
  }
  assert {
    condition     = var.create_security_group || length(var.security_group_ids) > 0
    error_message = "security_group_ids must name at least one group when create_security_group is false."
  }
}
