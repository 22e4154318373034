################################################################################
# The vault's bucket and key policies. Every primary-account principal (admin
# included) is denied everything outside a short allow-list: replication adds
# replicas, and a vault verify run (mode "verify") reads a backup and adds its
# verdict. Deletes of any kind, retention changes and writes to any other key
# are denied outright. tests/terraform checks these documents
# (test_terraform_policies.py, "vault").
################################################################################

locals {
  # IAM actions per service, kept as data.
  actions = {
    # What S3 Replication does with the primary's replication role (no ReplicateDelete).
    replicate        = ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"]
    replicate_bucket = ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"]
    # A vault verify run (every call pgautodumper makes there in mode "verify"): list the
    # name's backups, read the newest one, add its verdict. No lock, no multipart upload.
    verify_read  = ["s3:GetObject"]
    verify_list  = ["s3:ListBucket"]
    verify_write = ["s3:PutObject"]
    # Nothing else is ever allowed to a primary-account principal.
    replica_key = ["kms:Encrypt", "kms:GenerateDataKey"]
    verify_key  = ["kms:Decrypt", "kms:GenerateDataKey"]
  }

  verify = length(var.verify_role_arns) > 0
  primary_allowed_s3 = distinct(concat(
    local.actions.replicate, local.actions.replicate_bucket,
    local.verify ? concat(local.actions.verify_read, local.actions.verify_list, local.actions.verify_write) : [],
  ))
  primary_allowed_kms = distinct(concat(local.actions.replica_key, local.verify ? local.actions.verify_key : []))

  backups_arn = "${local.bucket_arn}/${local.key_prefix}*"
  # The only keys a primary principal may write (a verify run's verdict, or its outcome
  # when the verify failed: pgautodumper.layout). COMPLIANCE Object Lock makes each write
  # an immutable version; nothing of the primary account can remove one.
  verdict_arns = [
    "${local.bucket_arn}/${local.key_prefix}*.verified.json",
    "${local.bucket_arn}/${local.key_prefix}*.verify.outcome.json",
  ]
  list_prefixes = [local.key_prefix == "" ? "*" : "${local.key_prefix}*"]
}

data "aws_iam_policy_document" "vault_bucket" {
  # Cross-account principals as the account root plus aws:PrincipalArn: the policy can be
  # written before the primary's roles exist (a role principal must exist when the policy is set).
  statement {
    sid       = "ReplicationAddsReplicas"
    actions   = local.actions.replicate
    resources = [local.backups_arn]
    principals {
      type        = "AWS"
      identifiers = [local.source_root]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [var.replication_role_arn]
    }
  }

  statement {
    sid       = "ReplicationReadsBucketSettings"
    actions   = local.actions.replicate_bucket
    resources = [local.bucket_arn]
    principals {
      type        = "AWS"
      identifiers = [local.source_root]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [var.replication_role_arn]
    }
  }

  dynamic "statement" {
    for_each = local.verify ? [1] : []
    content {
      sid       = "VerifyRunReads"
      actions   = local.actions.verify_read
      resources = [local.backups_arn]
      principals {
        type        = "AWS"
        identifiers = [local.source_root]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = var.verify_role_arns
      }
    }
  }

  # A missing key is then 404, not 403 (a verdict not yet written, the lock ReleaseLock
  # looks for).
  dynamic "statement" {
    for_each = local.verify ? [1] : []
    content {
      sid       = "VerifyRunLists"
      actions   = local.actions.verify_list
      resources = [local.bucket_arn]
      principals {
        type        = "AWS"
        identifiers = [local.source_root]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = var.verify_role_arns
      }
      condition {
        test     = "StringLike"
        variable = "s3:prefix"
        values   = local.list_prefixes
      }
    }
  }

  dynamic "statement" {
    for_each = local.verify ? [1] : []
    content {
      sid       = "VerifyRunAddsVerdicts"
      actions   = local.actions.verify_write
      resources = local.verdict_arns
      principals {
        type        = "AWS"
        identifiers = [local.source_root]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = var.verify_role_arns
      }
    }
  }

  # Whatever any primary-account policy says (admin included): nothing but the allow-list.
  statement {
    sid         = "DenyPrimaryAccountAllElse"
    effect      = "Deny"
    not_actions = local.primary_allowed_s3
    resources   = [local.bucket_arn, "${local.bucket_arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [var.source_account_id]
    }
  }

  # No delete of any kind (not even a delete marker) and no retention change, ever
  # (DenyPrimaryAccountAllElse covers these too; this says it).
  statement {
    sid       = "DenyPrimaryAccountDeletes"
    effect    = "Deny"
    actions   = ["s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [var.source_account_id]
    }
  }

  # Writes only to verdict keys: never over a backup, a manifest or anything else.
  statement {
    sid           = "DenyPrimaryAccountWritesButVerdicts"
    effect        = "Deny"
    actions       = ["s3:PutObject"]
    not_resources = local.verdict_arns
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [var.source_account_id]
    }
  }

  dynamic "statement" {
    for_each = var.enable_tls_only_bucket_policy ? [1] : []
    content {
      sid       = "DenyInsecureTransport"
      effect    = "Deny"
      actions   = ["s3:*"]
      resources = [local.bucket_arn, "${local.bucket_arn}/*"]
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
}

data "aws_iam_policy_document" "vault_key" {
  #checkov:skip=CKV_AWS_109:A key policy; "*" resource means this key only, and the statement is the AWS default delegation to the vault account's IAM.
  #checkov:skip=CKV_AWS_111:A key policy; "*" resource means this key only, and the statement is the AWS default delegation to the vault account's IAM.
  #checkov:skip=CKV_AWS_356:A key policy; "*" resource means this key only (AWS requires "*" in key policies).

  # Administration stays with the vault account.
  statement {
    sid       = "VaultAccountAdministration"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "ReplicationEncryptsReplicas"
    actions   = local.actions.replica_key
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = [local.source_root]
    }
    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = [var.replication_role_arn]
    }
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.${local.dns_suffix}"]
    }
  }

  dynamic "statement" {
    for_each = local.verify ? [1] : []
    content {
      sid       = "VerifyRunUsesKeyThroughS3"
      actions   = local.actions.verify_key
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = [local.source_root]
      }
      condition {
        test     = "ArnEquals"
        variable = "aws:PrincipalArn"
        values   = var.verify_role_arns
      }
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["s3.${local.region}.${local.dns_suffix}"]
      }
    }
  }

  # Cross-account principals cannot administer a key anyway; this makes it explicit
  # (and survives a future broader grant): the primary account may only encrypt/decrypt.
  statement {
    sid         = "DenyPrimaryAccountAllElse"
    effect      = "Deny"
    not_actions = local.primary_allowed_kms
    resources   = ["*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:PrincipalAccount"
      values   = [var.source_account_id]
    }
  }
}
