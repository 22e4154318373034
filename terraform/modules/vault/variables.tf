variable "name_prefix" {
  description = "Prefix of the vault's names (bucket prefix, key alias); the primary module's name_prefix."
  type        = string
  default     = "pgautodumper"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-32 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "bucket_name" {
  description = "Name of the vault bucket; null generates one from name_prefix."
  type        = string
  default     = null
}

variable "bucket_prefix" {
  description = "Key prefix of the backups (the primary module's bucket_prefix): replicas keep their keys."
  type        = string
  default     = "backups"
}

variable "source_account_id" {
  description = "The primary account (where the pgautodumper module runs). Its principals may only add objects here."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.source_account_id))
    error_message = "source_account_id must be a 12-digit AWS account id."
  }
}

variable "replication_role_arn" {
  description = "The primary module's vault_replication_role_arn output (named before it exists, so this module may be applied first)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.replication_role_arn))
    error_message = "replication_role_arn must be an IAM role ARN."
  }
}

variable "verify_role_arns" {
  description = "Primary-account roles of a vault verify run (the primary module's vault_verify_role_arns output, when vault.verify_schedule is set): they may list the prefix, read objects, and add only verdicts (<stem>.verified.json, <stem>.verify.outcome.json); never delete."
  type        = list(string)
  default     = []
}

variable "object_lock_days" {
  description = "Default COMPLIANCE-mode retention of every replica, in days: no one, the vault account's root included, can delete a replica or shorten this before it ends."
  type        = number
  default     = 35

  validation {
    condition     = var.object_lock_days >= 1 && var.object_lock_days <= 36500
    error_message = "object_lock_days must be between 1 and 36500."
  }
}

variable "expiration_days" {
  description = "Days after which the lifecycle expires a replica (it can only once its retention has ended); null keeps replicas until deleted by the vault account."
  type        = number
  default     = null
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before a destroyed vault key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be between 7 and 30."
  }
}

variable "enable_tls_only_bucket_policy" {
  description = "Deny requests not made over TLS 1.2+? Turn off only for the emulator (moto applies conditional Denies to every request)."
  type        = bool
  default     = true
}

variable "force_destroy_bucket" {
  description = "Let terraform destroy a vault bucket that still holds replicas (COMPLIANCE-locked versions still cannot be deleted)? Only for throwaway environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags of every resource the module creates."
  type        = map(string)
  default     = {}
}
