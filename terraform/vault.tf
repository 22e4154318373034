################################################################################
# The vault (optional): S3 Replication of every backup object to a bucket in
# another account, under COMPLIANCE-mode Object Lock (modules/vault). The
# primary account only ever *adds* objects there: delete markers are not
# replicated, replica modification sync is off, and the replication role may
# not replicate deletes. What the vault account's policies deny the primary
# account is in modules/vault.
################################################################################

locals {
  create_vault_replication = var.vault != null && var.create_bucket
  vault_bucket_arn         = var.vault == null ? null : var.vault.bucket_arn
  vault_backups_arn        = var.vault == null ? null : "${var.vault.bucket_arn}/${local.key_prefix}*"
  # The vault module names this role in its bucket and key policies before it exists.
  vault_replication_role_name = "${var.name_prefix}-vault-replication"
  vault_replication_role_arn  = "arn:${local.partition}:iam::${local.account_id}:role/${local.vault_replication_role_name}"
  vault_rule_id               = "vault"
  vault_region                = var.vault == null ? null : split(":", var.vault.kms_key_arn)[3]
}

data "aws_iam_policy_document" "vault_replication" {
  count = local.create_vault_replication ? 1 : 0

  # https://docs.aws.amazon.com/AmazonS3/latest/userguide/setting-repl-config-perm-overview.html
  statement {
    sid       = "ReadReplicationConfiguration"
    actions   = ["s3:GetReplicationConfiguration", "s3:ListBucket"]
    resources = [local.bucket_arn]
  }

  # GetObjectRetention/GetObjectLegalHold: replication into an Object Lock bucket
  # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock-managing.html).
  statement {
    sid = "ReadSourceVersions"
    actions = [
      "s3:GetObjectVersionForReplication", "s3:GetObjectVersionAcl", "s3:GetObjectVersionTagging",
      "s3:GetObjectRetention", "s3:GetObjectLegalHold",
    ]
    resources = [local.backups_arn]
  }

  # Objects only: no s3:ReplicateDelete, so no delete marker can ever reach the vault.
  statement {
    sid       = "WriteReplicas"
    actions   = ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"]
    resources = [local.vault_backups_arn]
  }

  # https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-config-for-kms-objects.html
  statement {
    sid       = "DecryptSourceObjects"
    actions   = ["kms:Decrypt"]
    resources = [local.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = ["${local.bucket_arn}*"]
    }
  }

  statement {
    sid       = "EncryptReplicas"
    actions   = ["kms:Encrypt", "kms:GenerateDataKey"]
    resources = [var.vault.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.vault_region}.${local.dns_suffix}"]
    }
    condition {
      test     = "StringLike"
      variable = "kms:EncryptionContext:aws:s3:arn"
      values   = ["${local.vault_bucket_arn}*"]
    }
  }
}

resource "aws_iam_role" "vault_replication" {
  count = local.create_vault_replication ? 1 : 0

  name               = local.vault_replication_role_name
  description        = "pgautodumper: S3 replicates backups to the vault"
  assume_role_policy = data.aws_iam_policy_document.assume["s3"].json
  tags               = local.tags
}

resource "aws_iam_role_policy" "vault_replication" {
  count = local.create_vault_replication ? 1 : 0

  name   = "vault-replication"
  role   = aws_iam_role.vault_replication[0].id
  policy = data.aws_iam_policy_document.vault_replication[0].json
}

resource "aws_s3_bucket_replication_configuration" "vault" {
  count = local.create_vault_replication ? 1 : 0

  role   = aws_iam_role.vault_replication[0].arn
  bucket = aws_s3_bucket.this[0].id

  rule {
    id       = local.vault_rule_id
    status   = "Enabled"
    priority = 0

    filter {
      prefix = local.key_prefix
    }

    # A delete in the primary account never hides a vault copy (and cross-account
    # delete markers are never replicated anyway:
    # https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-what-is-isnot-replicated.html).
    delete_marker_replication {
      status = "Disabled"
    }

    source_selection_criteria {
      sse_kms_encrypted_objects {
        status = "Enabled"
      }
      # Metadata changes on replicas never flow back, and nothing flows from replicas.
      replica_modifications {
        status = "Disabled"
      }
    }

    destination {
      bucket        = var.vault.bucket_arn
      account       = var.vault.account_id
      storage_class = var.vault.storage_class

      # Replicas belong to the vault account (its bucket also enforces BucketOwnerEnforced).
      access_control_translation {
        owner = "Destination"
      }

      encryption_configuration {
        replica_kms_key_id = var.vault.kms_key_arn
      }

      # Replication metrics (failed operations, latency) feed the alarms below; they do
      # not need RTC (https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-metrics-events.html).
      metrics {
        status = "Enabled"
        dynamic "event_threshold" {
          for_each = var.vault.replication_time_control ? [15] : []
          content {
            minutes = event_threshold.value
          }
        }
      }

      dynamic "replication_time" {
        for_each = var.vault.replication_time_control ? [15] : []
        content {
          status = "Enabled"
          time {
            minutes = replication_time.value
          }
        }
      }
    }
  }

  depends_on = [aws_s3_bucket_versioning.this, aws_iam_role_policy.vault_replication]
}

# Replication metrics are published in the source bucket's region, per rule:
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/metrics-dimensions.html
locals {
  vault_alarms = local.create_vault_replication ? {
    replication-failed = {
      metric      = "OperationsFailedReplication"
      statistic   = "Sum"
      threshold   = 1
      periods     = 1
      description = "Backup objects failed to replicate to the vault ${var.vault.bucket_arn}. Usually a vault bucket or key policy that no longer admits ${local.vault_replication_role_arn}, or a vault key disabled. See the module README, 'The vault'."
    }
    replication-lagging = {
      metric      = "ReplicationLatency"
      statistic   = "Maximum"
      threshold   = var.vault.alarm_latency_minutes * 60
      periods     = 3
      description = "Backups reach the vault ${var.vault.bucket_arn} more than ${var.vault.alarm_latency_minutes} minutes late. The off-site copy is behind; check the replication rule and the vault account. See the module README, 'The vault'."
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "vault" {
  for_each = local.vault_alarms

  alarm_name        = "${var.name_prefix}-vault-${each.key}"
  alarm_description = each.value.description
  namespace         = "AWS/S3"
  metric_name       = each.value.metric
  dimensions = {
    SourceBucket      = local.bucket_name
    DestinationBucket = split(":::", var.vault.bucket_arn)[1]
    RuleId            = local.vault_rule_id
  }
  statistic           = each.value.statistic
  period              = 300
  evaluation_periods  = each.value.periods
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = each.value.threshold
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}
