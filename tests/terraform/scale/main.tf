# The module at scale and at its limits, planned (never applied) against a moto server:
# 100 databases, the longest allowed name_prefix, database key and secret ARN, every
# optional grant (vault with a verify schedule, Slack under a customer key).
# tests/terraform/test_terraform_scale.py measures every policy and every name of the plan;
# test_terraform_dashboard.py reads the dashboards, test_terraform_policies.py what the
# primary's roles may do in the vault.

terraform {
  required_providers {
    aws = {
      source = "hashicorp/aws"
    }
  }
}

variable "moto_endpoint" {
  type = string
}

provider "aws" {
  region                      = "eu-central-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true
  endpoints {
    sts = var.moto_endpoint
    iam = var.moto_endpoint
  }
}

locals {
  name_prefix = "pgautodumper-scale-limits-abcdef"         # 32 characters: the longest allowed
  longest_key = "k${join("", [for i in range(56) : "x"])}" # 57 characters: the longest allowed
  # A secret ARN of exactly 280 characters (the longest allowed).
  arn_head = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:"
  ca_certs = {
    "database-000-with-a-fairly-long-name" = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:pgautodumper/ca-AbCdEf"
    "database-001-with-a-fairly-long-name" = "arn:aws:ssm:eu-central-1:123456789012:parameter/pgautodumper/ca"
  }
  names = concat([local.longest_key], [for i in range(99) : format("database-%03d-with-a-fairly-long-name", i)])
  databases = {
    for name in local.names : name => {
      secret_arn      = "${local.arn_head}${substr("${name}-${join("", [for i in range(280) : "s"])}", 0, 280 - length(local.arn_head) - 7)}-AbCdEf"
      verify_schedule = "cron(0 5 ? * SUN *)"
      # One database with its own alarm window (the dashboard's annotation follows it).
      alarm_window_hours     = name == local.longest_key ? 50 : null
      stream_threshold_bytes = name == local.longest_key ? 1048576 : null
      # Self-managed servers with their own CA, one kept in each place it may be.
      sslmode       = "verify-full"
      ssl_root_cert = lookup(local.ca_certs, name, null)
    }
  }
}

module "pgautodumper" {
  source = "../../../terraform"

  name_prefix = local.name_prefix
  task_image  = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/pgautodumper@sha256:0000000000000000000000000000000000000000000000000000000000000000"
  vpc_id      = "vpc-0123456789abcdef0"
  subnet_ids  = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210", "subnet-00000000000000001"]
  databases   = local.databases

  # Known at plan time, so every policy renders: the key and bucket ARNs have the real shapes.
  bucket_name    = "pgautodumper-scale-limits-backups-0123456789abcdef0123456789abc"
  create_kms_key = false
  kms_key_arn    = "arn:aws:kms:eu-central-1:123456789012:key/0123abcd-0123-4567-89ab-0123456789ab"
  secret_kms_key_arns = [
    "arn:aws:kms:eu-central-1:123456789012:key/1123abcd-0123-4567-89ab-0123456789ab",
    "arn:aws:kms:eu-central-1:123456789012:key/2123abcd-0123-4567-89ab-0123456789ab",
  ]
  slack_webhook_secret_arn  = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:pgautodumper/slack-webhook-AbCdEf"
  slack_webhook_kms_key_arn = "arn:aws:kms:eu-central-1:123456789012:key/3123abcd-0123-4567-89ab-0123456789ab"
  lambda_zip_path           = "${path.module}/dummy.zip"

  vault = {
    bucket_arn      = "arn:aws:s3:::pgautodumper-scale-limits-vault-0123456789abcdef0123456789abcde"
    kms_key_arn     = "arn:aws:kms:eu-west-1:210987654321:key/4123abcd-0123-4567-89ab-0123456789ab"
    account_id      = "210987654321"
    verify_schedule = "cron(0 7 ? * SAT *)"
  }
}

# The outputs tests/terraform reads from the plan (dashboard checks).
output "dashboard_url" {
  value = module.pgautodumper.dashboard_url
}

output "dashboard_urls" {
  value = module.pgautodumper.dashboard_urls
}

output "on_demand_inputs" {
  value = module.pgautodumper.on_demand_inputs
}
