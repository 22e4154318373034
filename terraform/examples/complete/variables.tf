variable "region" {
  description = "AWS region to deploy into."
  type        = string
  default     = "eu-central-1"
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
  description = "Existing private subnets with a route to the databases and to AWS APIs."
  type        = list(string)
  default     = ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
}

variable "orders_secret_arn" {
  description = "RDS-format secret of the orders database."
  type        = string
  default     = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:orders-backup-AbCdEf"
}

variable "billing_secret_arn" {
  description = "RDS-format secret of the billing database."
  type        = string
  default     = "arn:aws:secretsmanager:eu-central-1:123456789012:secret:billing-backup-GhIjKl"
}

variable "alarm_email_addresses" {
  description = "Who receives the alerts."
  type        = list(string)
  default     = ["oncall@example.com"]
}

variable "slack_webhook_secret_arn" {
  description = "Secret holding the Slack webhook URL (null: no Slack)."
  type        = string
  default     = null
}
