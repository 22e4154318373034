################################################################################
# Per database: a backup schedule and (optionally) a verify schedule. A start
# that keeps failing lands in the dead-letter queue, which has an alarm.
################################################################################

resource "aws_sqs_queue" "scheduler_dlq" {
  name                      = local.scheduler_dlq_name
  kms_master_key_id         = local.kms_key_arn
  message_retention_seconds = 1209600
  tags                      = local.tags
}

data "aws_iam_policy_document" "scheduler_dlq" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.scheduler_dlq.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "scheduler_dlq" {
  queue_url = aws_sqs_queue.scheduler_dlq.id
  policy    = data.aws_iam_policy_document.scheduler_dlq.json
}

resource "aws_scheduler_schedule_group" "this" {
  name = var.name_prefix
  tags = local.tags
}

locals {
  schedules = merge(
    {
      for name, request in local.backup_requests : "${name}-backup" => {
        database   = name
        expression = var.databases[name].backup_schedule
        request    = request
      }
    },
    {
      for name, request in local.verify_requests : "${name}-verify" => {
        database   = name
        expression = var.databases[name].verify_schedule
        request    = request
      }
    },
    {
      for name, request in local.vault_verify_requests : "${name}-vault" => {
        database   = name
        expression = var.vault.verify_schedule
        request    = request
      }
    },
  )
}

resource "aws_scheduler_schedule" "this" {
  for_each = local.schedules

  name        = each.key
  group_name  = aws_scheduler_schedule_group.this.name
  description = "pgautodumper: ${endswith(each.key, "-vault") ? "verify the newest vault copy" : endswith(each.key, "-verify") ? "backup and verify" : "backup"} of ${each.value.database}"
  state       = var.databases[each.value.database].schedule_is_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn = local.kms_key_arn

  schedule_expression          = each.value.expression
  schedule_expression_timezone = var.databases[each.value.database].schedule_timezone

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.this.arn
    role_arn = aws_iam_role.scheduler.arn
    input    = jsonencode(each.value.request)

    retry_policy {
      maximum_retry_attempts       = var.scheduler_retry_policy.maximum_retry_attempts
      maximum_event_age_in_seconds = var.scheduler_retry_policy.maximum_event_age_in_seconds
    }

    dead_letter_config {
      arn = aws_sqs_queue.scheduler_dlq.arn
    }
  }
}
