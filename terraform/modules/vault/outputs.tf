output "bucket_name" {
  description = "The vault bucket: list, restore, verify and export take it as --bucket."
  value       = aws_s3_bucket.vault.id
}

output "bucket_arn" {
  description = "ARN of the vault bucket (the primary module's vault.bucket_arn)."
  value       = aws_s3_bucket.vault.arn
}

output "kms_key_arn" {
  description = "The vault's own key (the primary module's vault.kms_key_arn)."
  value       = aws_kms_key.vault.arn
}

output "account_id" {
  description = "The vault account (the primary module's vault.account_id)."
  value       = data.aws_caller_identity.vault.account_id
}
