################################################################################
# The vault's bucket and key policies. Every primary-account principal (admin
# included) is denied everything outside a short allow-list that only adds or
# reads objects; deletes are denied outright, except delete markers on the
# run-lock and preflight-probe keys of a vault verify run. tests/terraform
# checks these documents (test_terraform_policies.py, "vault").
################################################################################

locals {
  # IAM actions per service, kept as data.
  actions = {
    # What S3 Replication does with the primary's replication role (no ReplicateDelete).
    replicate        = ["s3:ReplicateObject", "s3:ReplicateTags", "s3:ObjectOwnerOverrideToBucketOwner"]
    replicate_bucket = ["s3:GetBucketVersioning", "s3:GetBucketObjectLockConfiguration"]
    # A vault verify run: read, add objects, list (every call pgautodumper makes there).
    verify_objects = [
      "s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention", "s3:GetObjectLegalHold",
      "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts",
    ]
    verify_list = ["s3:ListBucket", "s3:ListBucketVersions"]
    # Nothing else is ever allowed to a primary-account principal.
    replica_key = ["kms:Encrypt", "kms:GenerateDataKey"]
    verify_key  = ["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"]
  }

  primary_allowed_s3 = distinct(concat(
    local.actions.replicate, local.actions.replicate_bucket, local.actions.verify_objects,
    local.actions.verify_list, length(var.verify_role_arns) > 0 ? ["s3:DeleteObject"] : [],
  ))
  primary_allowed_kms = distinct(concat(local.actions.replica_key, local.actions.verify_key))

  backups_arn = "${local.bucket_arn}/${local.key_prefix}*"
  # The only keys a primary principal may put a delete marker on (a verify run's lock and probe).
  run_marker_arns = [
    "${local.bucket_arn}/${local.key_prefix}*/.lock",
    "${local.bucket_arn}/${local.key_prefix}*/.preflight-*",
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
    for_each = length(var.verify_role_arns) > 0 ? [1] : []
    content {
      sid       = "VerifyRunReadsAndAdds"
      actions   = local.actions.verify_objects
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

  dynamic "statement" {
    for_each = length(var.verify_role_arns) > 0 ? [1] : []
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

  # The run lock and the preflight probe: a DeleteObject without a version id only adds a
  # delete marker; the locked versions underneath stay.
  dynamic "statement" {
    for_each = length(var.verify_role_arns) > 0 ? [1] : []
    content {
      sid       = "VerifyRunReleasesItsLock"
      actions   = ["s3:DeleteObject"]
      resources = local.run_marker_arns
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

  # No delete of a backup, ever (DenyPrimaryAccountAllElse covers it too; this says it).
  statement {
    sid       = "DenyPrimaryAccountDeletes"
    effect    = "Deny"
    actions   = ["s3:DeleteObjectVersion", "s3:BypassGovernanceRetention", "s3:PutObjectRetention", "s3:PutObjectLegalHold"]
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

  # Delete markers only on a verify run's lock and probe keys, never on a backup.
  dynamic "statement" {
    for_each = length(var.verify_role_arns) > 0 ? [1] : []
    content {
      sid           = "DenyPrimaryAccountDeleteMarkersOnBackups"
      effect        = "Deny"
      actions       = ["s3:DeleteObject"]
      not_resources = local.run_marker_arns
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
    for_each = length(var.verify_role_arns) > 0 ? [1] : []
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
