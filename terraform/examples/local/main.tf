# The module against the emulator (a moto server): what tests/terraform applies.
# Everything AWS-shaped is created in moto, including the VPC and subnet.

provider "aws" {
  region                      = "us-east-1"
  access_key                  = "testing"
  secret_key                  = "testing"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_requesting_account_id  = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    cloudwatch     = var.moto_endpoint
    cloudwatchlogs = var.moto_endpoint
    ec2            = var.moto_endpoint
    ecs            = var.moto_endpoint
    events         = var.moto_endpoint
    iam            = var.moto_endpoint
    kms            = var.moto_endpoint
    lambda         = var.moto_endpoint
    s3             = var.moto_endpoint
    scheduler      = var.moto_endpoint
    secretsmanager = var.moto_endpoint
    sfn            = var.moto_endpoint
    sns            = var.moto_endpoint
    sqs            = var.moto_endpoint
    sts            = var.moto_endpoint
  }
}

# moto's ECS backend refuses a VPC without DNS hostnames.
resource "aws_vpc" "local" {
  #checkov:skip=CKV2_AWS_11:Emulator VPC in moto; there is no traffic to log.
  #checkov:skip=CKV2_AWS_12:Emulator VPC in moto; its default security group is never used.
  cidr_block           = "10.42.0.0/16"
  enable_dns_support   = true
  enable_dns_hostnames = true
}

resource "aws_subnet" "local" {
  vpc_id     = aws_vpc.local.id
  cidr_block = "10.42.1.0/24"
}

resource "aws_secretsmanager_secret" "database" {
  #checkov:skip=CKV2_AWS_57:Emulator secret; rotation is the database owner's concern.
  #checkov:skip=CKV_AWS_149:Emulator secret; the default key is enough in moto.
  name                    = "pgautodumper-local-database"
  recovery_window_in_days = 0
}

module "pgautodumper" {
  source = "../.."

  name_prefix     = var.name_prefix
  task_image      = "pgautodumper-task:local"
  lambda_zip_path = var.lambda_zip_path

  vpc_id     = aws_vpc.local.id
  subnet_ids = [aws_subnet.local.id]

  databases = {
    local = {
      secret_arn        = aws_secretsmanager_secret.database.arn
      sslmode           = "disable"
      notify_on_success = true
      task              = { cpu = 256, memory = 512, timeout_seconds = 600 }
    }
  }

  task_defaults = { cpu = 256, memory = 512 }

  bucket_name          = var.bucket_name
  force_destroy_bucket = true
  # moto applies a conditional Deny to every request: the TLS-only policy
  # would make every object call a 403 there.
  enable_tls_only_bucket_policy   = false
  kms_key_deletion_window_in_days = 7
}
