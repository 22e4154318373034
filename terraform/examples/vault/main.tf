# The vault: every backup replicated to a bucket in another AWS account (and region),
# under COMPLIANCE-mode Object Lock, with its own key. Two providers: the primary
# account (where the module runs) and the vault account (an admin role there).

locals {
  # Every provider endpoint at one URL: the emulator (tests/terraform); null on AWS.
  emulated = var.endpoint_url != null
}

provider "aws" {
  region                      = var.region
  skip_credentials_validation = local.emulated
  s3_use_path_style           = local.emulated

  dynamic "endpoints" {
    for_each = local.emulated ? [var.endpoint_url] : []
    content {
      cloudwatch     = endpoints.value
      cloudwatchlogs = endpoints.value
      ec2            = endpoints.value
      ecs            = endpoints.value
      events         = endpoints.value
      iam            = endpoints.value
      kms            = endpoints.value
      lambda         = endpoints.value
      s3             = endpoints.value
      scheduler      = endpoints.value
      secretsmanager = endpoints.value
      sfn            = endpoints.value
      sns            = endpoints.value
      sqs            = endpoints.value
      sts            = endpoints.value
    }
  }
}

provider "aws" {
  alias                       = "vault"
  region                      = var.vault_region
  skip_credentials_validation = local.emulated
  s3_use_path_style           = local.emulated

  assume_role {
    role_arn     = var.vault_admin_role_arn
    session_name = "pgautodumper-vault"
  }

  dynamic "endpoints" {
    for_each = local.emulated ? [var.endpoint_url] : []
    content {
      iam = endpoints.value
      kms = endpoints.value
      s3  = endpoints.value
      sts = endpoints.value
    }
  }
}

data "aws_caller_identity" "primary" {}

module "pgautodumper" {
  source = "../.."

  name_prefix = var.name_prefix
  task_image  = var.task_image
  vpc_id      = var.vpc_id
  subnet_ids  = var.subnet_ids

  databases = {
    orders = {
      secret_arn      = var.orders_secret_arn
      backup_schedule = "cron(15 2 * * ? *)"
    }
  }

  vault = {
    bucket_arn      = module.vault.bucket_arn
    kms_key_arn     = module.vault.kms_key_arn
    account_id      = module.vault.account_id
    verify_schedule = var.vault_verify_schedule
  }

  lambda_zip_path                 = var.lambda_zip_path
  alarm_email_addresses           = var.alarm_email_addresses
  enable_tls_only_bucket_policy   = !local.emulated
  force_destroy_bucket            = local.emulated
  kms_key_deletion_window_in_days = local.emulated ? 7 : 30
}

module "vault" {
  source    = "../../modules/vault"
  providers = { aws = aws.vault }

  name_prefix          = var.name_prefix
  source_account_id    = data.aws_caller_identity.primary.account_id
  replication_role_arn = module.pgautodumper.vault_replication_role_arn
  verify_role_arns     = var.vault_verify_schedule == null ? [] : module.pgautodumper.vault_verify_role_arns
  object_lock_days     = var.vault_object_lock_days
  expiration_days      = var.vault_object_lock_days + 1

  enable_tls_only_bucket_policy   = !local.emulated
  force_destroy_bucket            = local.emulated
  kms_key_deletion_window_in_days = local.emulated ? 7 : 30
}
