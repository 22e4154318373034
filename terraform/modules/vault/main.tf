################################################################################
# The vault: a bucket in another account that the primary account can only add
# to. Apply with a provider for the vault account (and region).
#
# What keeps an attacker with admin in the primary account out:
#  - COMPLIANCE-mode Object Lock with a default retention: no principal of any
#    account can delete a locked version or shorten its retention
#    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-lock.html);
#  - the bucket policy denies every primary-account principal every action but
#    the few that add or read objects (policies.tf);
#  - the vault's own KMS key, administered only by the vault account; its policy
#    denies the primary account everything but encrypt/decrypt through S3.
#    Key administration (ScheduleKeyDeletion, PutKeyPolicy, DisableKey) cannot
#    be performed from another account at all
#    (https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-modifying-external-accounts.html).
################################################################################

data "aws_caller_identity" "vault" {}
data "aws_region" "vault" {}
data "aws_partition" "vault" {}

locals {
  account_id = data.aws_caller_identity.vault.account_id
  region     = data.aws_region.vault.name
  partition  = data.aws_partition.vault.partition
  dns_suffix = data.aws_partition.vault.dns_suffix
  tags       = merge({ "pgautodumper:module" = "pgautodumper-vault" }, var.tags)

  key_prefix = var.bucket_prefix == "" ? "" : "${var.bucket_prefix}/"
  # A given name is known at plan time, so the policies render before the bucket exists.
  bucket_arn  = var.bucket_name != null ? "arn:${local.partition}:s3:::${var.bucket_name}" : aws_s3_bucket.vault.arn
  source_root = "arn:${local.partition}:iam::${var.source_account_id}:root"
}

resource "aws_kms_key" "vault" {
  description             = "${var.name_prefix} vault: replicas of the backups"
  enable_key_rotation     = true
  deletion_window_in_days = var.kms_key_deletion_window_in_days
  policy                  = data.aws_iam_policy_document.vault_key.json
  tags                    = local.tags
}

resource "aws_kms_alias" "vault" {
  name          = "alias/${var.name_prefix}-vault"
  target_key_id = aws_kms_key.vault.key_id
}

resource "aws_s3_bucket" "vault" {
  #checkov:skip=CKV_AWS_144:This bucket is the replica: cross-region replication is what feeds it.
  #checkov:skip=CKV_AWS_18:Server access logs need a log bucket in the vault account; CloudTrail data events are the recommended audit trail.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object events in the vault; replication failures alarm in the primary account.
  bucket              = var.bucket_name
  bucket_prefix       = var.bucket_name == null ? "${var.name_prefix}-vault-" : null
  object_lock_enabled = true
  force_destroy       = var.force_destroy_bucket
  tags                = local.tags
}

resource "aws_s3_bucket_ownership_controls" "vault" {
  bucket = aws_s3_bucket.vault.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_public_access_block" "vault" {
  bucket                  = aws_s3_bucket.vault.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_versioning" "vault" {
  bucket = aws_s3_bucket.vault.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_object_lock_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id
  rule {
    # Replicas without a retention of their own get this one
    # (https://docs.aws.amazon.com/AmazonS3/latest/userguide/replication-what-is-isnot-replicated.html).
    default_retention {
      mode = "COMPLIANCE"
      days = var.object_lock_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.vault]
}

resource "aws_s3_bucket_server_side_encryption_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.vault.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "vault" {
  bucket = aws_s3_bucket.vault.id

  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"
    filter {}
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # Lifecycle never removes a locked version; it expires replicas once they may go.
  rule {
    id     = "expire-replicas"
    status = var.expiration_days == null ? "Disabled" : "Enabled"
    filter {}
    expiration {
      days = coalesce(var.expiration_days, var.object_lock_days)
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
  }

  depends_on = [aws_s3_bucket_versioning.vault]
}

resource "aws_s3_bucket_policy" "vault" {
  bucket = aws_s3_bucket.vault.id
  policy = data.aws_iam_policy_document.vault_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.vault]
}
