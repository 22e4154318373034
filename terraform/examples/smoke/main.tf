# `make smoke-aws` (scripts/smoke_aws.py): the module with one database, a throwaway
# queue subscribed to its alert topic, everything named under a unique prefix and
# destroyed afterwards. Given an existing secret, subnets that reach the database and a
# task image, it proves the whole system in your account; the tests run it against the
# emulator (endpoint_url).

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

module "pgautodumper" {
  source = "../.."

  name_prefix     = var.name_prefix
  task_image      = var.task_image
  lambda_zip_path = var.lambda_zip_path

  vpc_id                = var.vpc_id
  subnet_ids            = var.subnet_ids
  create_security_group = length(var.security_group_ids) == 0
  security_group_ids    = var.security_group_ids
  database_cidr_blocks  = var.database_cidr_blocks
  secret_kms_key_arns   = var.secret_kms_key_arns

  databases = {
    smoke = {
      secret_arn        = var.secret_arn
      sslmode           = var.sslmode
      notify_on_success = true
      # Nothing runs on a schedule: the smoke test starts its one execution itself.
      schedule_is_enabled = false
      task                = { cpu = var.task_cpu, memory = var.task_memory, timeout_seconds = 3600 }
    }
  }
  task_defaults = { cpu = var.task_cpu, memory = var.task_memory }

  force_destroy_bucket            = true
  kms_key_deletion_window_in_days = 7
  # moto applies conditional Denies to every request (the emulator only).
  enable_tls_only_bucket_policy = !local.emulated
}

# Where the smoke test reads the notification: SNS delivers raw messages here.
resource "aws_sqs_queue" "notifications" {
  name                      = "${var.name_prefix}-smoke-notifications"
  sqs_managed_sse_enabled   = true
  message_retention_seconds = 3600
}

data "aws_iam_policy_document" "notifications" {
  statement {
    sid       = "AlertTopicDelivers"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.notifications.arn]
    principals {
      type        = "Service"
      identifiers = ["sns.amazonaws.com"]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = [module.pgautodumper.sns_topic_arn]
    }
  }
}

resource "aws_sqs_queue_policy" "notifications" {
  queue_url = aws_sqs_queue.notifications.id
  policy    = data.aws_iam_policy_document.notifications.json
}

resource "aws_sns_topic_subscription" "notifications" {
  topic_arn            = module.pgautodumper.sns_topic_arn
  protocol             = "sqs"
  endpoint             = aws_sqs_queue.notifications.arn
  raw_message_delivery = true

  depends_on = [aws_sqs_queue_policy.notifications]
}
