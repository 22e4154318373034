output "bucket_name" {
  description = "The primary backup bucket."
  value       = module.pgautodumper.bucket_name
}

output "vault_bucket_name" {
  description = "The vault bucket: pass it as --bucket to list, restore, verify (same key layout)."
  value       = module.vault.bucket_name
}

output "vault_kms_key_arn" {
  description = "The vault's own key."
  value       = module.vault.kms_key_arn
}

output "vault_replication_role_arn" {
  description = "The role S3 Replication uses (primary account)."
  value       = module.pgautodumper.vault_replication_role_arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard: hours since the last backup, sizes, recovery time, failures."
  value       = module.pgautodumper.dashboard_url
}
