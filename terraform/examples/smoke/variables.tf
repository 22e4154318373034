variable "name_prefix" {
  description = "Unique prefix of every resource (the smoke script generates one per run)."
  type        = string
}

variable "region" {
  description = "AWS region to deploy into."
  type        = string
}

variable "task_image" {
  description = "Task image URI (pinned by digest or an immutable tag)."
  type        = string
}

variable "secret_arn" {
  description = "Existing RDS-format secret of the database to back up."
  type        = string
}

variable "secret_kms_key_arns" {
  description = "Customer-managed KMS keys of the secret (empty for aws/secretsmanager)."
  type        = list(string)
  default     = []
}

variable "vpc_id" {
  description = "VPC of subnet_ids."
  type        = string
}

variable "subnet_ids" {
  description = "Subnets that reach the database and the AWS APIs."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Existing security groups for the task and preflight; empty creates an egress-only one (its deletion can wait for Lambda's network interfaces)."
  type        = list(string)
  default     = []
}

variable "database_cidr_blocks" {
  description = "Where the created security group may reach the database."
  type        = list(string)
  default     = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
}

variable "sslmode" {
  description = "libpq sslmode towards the database."
  type        = string
  default     = "require"
}

variable "task_cpu" {
  description = "Fargate CPU of the dump and verify tasks."
  type        = number
  default     = 1024
}

variable "task_memory" {
  description = "Fargate memory (MiB) of the dump and verify tasks."
  type        = number
  default     = 2048
}

variable "lambda_zip_path" {
  description = "The Lambda artifact the smoke script built."
  type        = string
}

variable "endpoint_url" {
  description = "Send every AWS call to this URL (the emulator); null on AWS."
  type        = string
  default     = null
}
