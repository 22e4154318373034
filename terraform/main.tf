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

  kms_key_arn = var.create_kms_key ? aws_kms_key.this[0].arn : var.kms_key_arn

  bucket_name     = var.create_bucket ? aws_s3_bucket.this[0].id : var.bucket_name
  bucket_arn      = "arn:${local.partition}:s3:::${local.bucket_name}"
  key_prefix      = var.bucket_prefix == "" ? "" : "${var.bucket_prefix}/"
  backups_arn     = "${local.bucket_arn}/${local.key_prefix}*"
  security_groups = var.create_security_group ? concat([aws_security_group.this[0].id], var.security_group_ids) : var.security_group_ids

  secret_arns = distinct([for db in values(var.databases) : db.secret_arn])

  # What a schedule sends: a pgautodumper.contract.BackupRequest.
  backup_requests = {
    for name, db in var.databases : name => {
      name              = name
      secret_arn        = db.secret_arn
      bucket            = local.bucket_name
      prefix            = var.bucket_prefix
      verify            = false
      retention         = db.retention
      notify_on_success = db.notify_on_success
      sslmode           = db.sslmode
      task              = db.task
    }
  }
  verify_requests = {
    for name, request in local.backup_requests : name => merge(request, { verify = true })
    if var.databases[name].enable_verify
  }
}

check "bring_your_own_inputs" {
  assert {
    condition     = var.create_kms_key || var.kms_key_arn != null
    error_message = "kms_key_arn is required when create_kms_key is false."
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
