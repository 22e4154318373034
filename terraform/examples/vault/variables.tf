variable "region" {
  description = "Region of the primary deployment."
  type        = string
  default     = "eu-central-1"
}

variable "vault_region" {
  description = "Region of the vault bucket (another region survives a regional outage too)."
  type        = string
  default     = "eu-west-1"
}

variable "vault_admin_role_arn" {
  description = "A role in the vault account that Terraform assumes to create the vault (never used by the primary's workloads)."
  type        = string
  default     = "arn:aws:iam::210987654321:role/vault-admin"
}

variable "vault_object_lock_days" {
  description = "COMPLIANCE retention of every replica, in days."
  type        = number
  default     = 35
}

variable "vault_verify_schedule" {
  description = "Schedule of the vault verify run (restore the newest backup found in the vault, add its verdict there); null for none."
  type        = string
  default     = "cron(0 7 ? * SAT *)"
}

variable "name_prefix" {
  description = "Prefix of every resource name."
  type        = string
  default     = "pgautodumper"
}

variable "task_image" {
  description = "Task image URI, pinned by digest."
  type        = string
  default     = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/pgautodumper@sha256:0000000000000000000000000000000000000000000000000000000000000000"
}

variable "vpc_id" {
  description = "Existing VPC holding the databases."
  type        = string
  default     = "vpc-0123456789abcdef0"
}

variable "subnet_ids" {
  description = "Private subnets with a route to the databases and to AWS APIs."
  type        = list(string)
  default     = ["subnet-0123456789abcdef0"]
}

variable "orders_secret_arn" {
  description = "RDS-format secret of the orders database."
  type        = string
  default     = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:orders-backup-AbCdEf"
}

variable "alarm_email_addresses" {
  description = "Who receives the alerts (replication failures and lag included)."
  type        = list(string)
  default     = ["oncall@example.com"]
}

variable "lambda_zip_path" {
  description = "The Lambda artifact (make package); null: build/lambda/pgautodumper-lambda.zip."
  type        = string
  default     = null
}

variable "endpoint_url" {
  description = "Send every AWS call to this URL (the emulator); null on AWS."
  type        = string
  default     = null
}
