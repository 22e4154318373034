################################################################################
# Naming and tagging
################################################################################

variable "name_prefix" {
  description = "Prefix of every resource name (state machine, cluster, functions, roles, alarms)."
  type        = string
  default     = "pgautodumper"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-32 characters of lower-case letters, digits and hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Tags applied to every resource the module creates."
  type        = map(string)
  default     = {}
}

################################################################################
# Databases: one backup schedule (and optionally one verify schedule) each
################################################################################

variable "databases" {
  description = <<-EOT
    The databases to back up, keyed by backup name (the folder under the bucket prefix).
    secret_arn names a Secrets Manager secret in the RDS format (host, port, dbname,
    username, password); only its ARN ever travels through the workflow.
    sslmode "require" (the default) encrypts but accepts any server certificate;
    "verify-full" also authenticates the server (recommended): RDS and Aurora CAs are
    built in, and a self-managed server names its CA in ssl_root_cert, the ARN of a
    Secrets Manager secret or SSM parameter holding the PEM.
  EOT
  type = map(object({
    secret_arn          = string
    backup_schedule     = optional(string, "cron(0 3 * * ? *)")
    schedule_timezone   = optional(string, "UTC")
    verify_schedule     = optional(string, "cron(0 5 ? * SUN *)")
    enable_verify       = optional(bool, true)
    notify_on_success   = optional(bool, false)
    sslmode             = optional(string, "require")
    ssl_root_cert       = optional(string)
    alarm_window_hours  = optional(number)
    schedule_is_enabled = optional(bool, true)
    retention = optional(object({
      keep_last              = optional(number, 7)
      keep_daily             = optional(number, 7)
      keep_weekly            = optional(number, 4)
      keep_monthly           = optional(number, 6)
      keep_yearly            = optional(number, 0)
      incomplete_grace_hours = optional(number, 24)
    }), {})
    task = optional(object({
      cpu             = optional(number, 1024)
      memory          = optional(number, 2048)
      timeout_seconds = optional(number, 21600)
    }), {})
    jobs                      = optional(number)
    lock_wait_timeout_seconds = optional(number, 300)
    stream_threshold_bytes    = optional(number, 67108864)
  }))

  validation {
    condition     = length(var.databases) > 0
    error_message = "databases must name at least one database."
  }

  validation {
    # Mirrors pgautodumper.layout.check_name: the name is an S3 key segment.
    condition     = alltrue([for name in keys(var.databases) : can(regex("^[a-z0-9][a-z0-9._-]{0,62}$", name))])
    error_message = "Each database key (the backup name) must be 1-63 characters of lower-case letters, digits, '.', '_' or '-', starting with a letter or digit."
  }

  # Every name built from a database key, against its service's limit. The longest:
  #  - schedules "<key>-backup", "<key>-verify", "<key>-vault" (scheduler.tf): EventBridge
  #    Scheduler names are 1-64 characters [0-9a-zA-Z-_.]
  #    (https://docs.aws.amazon.com/scheduler/latest/APIReference/API_CreateSchedule.html);
  #  - the alarm "<name_prefix>-<key>-no-successful-backup" (alarms.tf): CloudWatch alarm
  #    names are 1-255 characters
  #    (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutMetricAlarm.html),
  #    counted with the longest name_prefix (32);
  #  - the metric dimension Name = <key> (1-1024 characters) and the S3 key segment.
  # No log group or stream, IAM role or policy name contains a key (tests/terraform
  # checks every name of a plan with the longest key and prefix).
  validation {
    condition     = alltrue([for name in keys(var.databases) : length("${name}-verify") <= 64])
    error_message = "A database key may be at most 57 characters: its schedule \"<key>-verify\" must fit EventBridge Scheduler's 64-character limit on schedule names."
  }

  validation {
    condition     = alltrue([for name in keys(var.databases) : 32 + length("-${name}-no-successful-backup") <= 255])
    error_message = "A database key is too long for its CloudWatch alarm name (255 characters)."
  }

  validation {
    # A managed policy holds 20 secret ARNs within IAM's 6,144 characters (iam.tf).
    condition     = alltrue([for db in values(var.databases) : length(db.secret_arn) <= 280])
    error_message = "Each secret_arn must be at most 280 characters (IAM managed-policy size; shorten the secret's name)."
  }

  validation {
    condition = alltrue([
      for db in values(var.databases) : can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", db.secret_arn))
    ])
    error_message = "Each secret_arn must be a full Secrets Manager secret ARN."
  }

  validation {
    condition = alltrue(flatten([
      for db in values(var.databases) : [
        for expr in [db.backup_schedule, db.verify_schedule] : can(regex("^(cron|rate|at)\\(.+\\)$", expr))
      ]
    ]))
    error_message = "backup_schedule and verify_schedule must be EventBridge Scheduler expressions: cron(...), rate(...) or at(...)."
  }

  validation {
    # Read by the preflight Lambda and the task (iam.tf, ReadCaCertificates).
    condition = alltrue([
      for db in values(var.databases) : db.ssl_root_cert == null || can(regex("^arn:aws[a-z-]*:(secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:|ssm:[a-z0-9-]+:[0-9]{12}:parameter/).+$", db.ssl_root_cert))
    ])
    error_message = "ssl_root_cert must be the full ARN of a Secrets Manager secret or an SSM parameter holding the CA certificate's PEM."
  }

  validation {
    condition     = alltrue([for db in values(var.databases) : contains(["disable", "allow", "prefer", "require", "verify-ca", "verify-full"], db.sslmode)])
    error_message = "sslmode must be one of libpq's modes: disable, allow, prefer, require, verify-ca, verify-full."
  }

  validation {
    condition = alltrue([
      for db in values(var.databases) : db.retention.keep_last >= 1 && db.retention.keep_daily >= 0 && db.retention.keep_weekly >= 0 && db.retention.keep_monthly >= 0 && db.retention.keep_yearly >= 0 && db.retention.incomplete_grace_hours >= 1
    ])
    error_message = "retention: keep_last must be at least 1, the other counts at least 0, incomplete_grace_hours at least 1."
  }

  validation {
    # The valid Fargate CPU/memory pairs (MiB).
    condition = alltrue([
      for db in values(var.databases) : (
        (db.task.cpu == 256 && contains([512, 1024, 2048], db.task.memory)) ||
        (db.task.cpu == 512 && db.task.memory >= 1024 && db.task.memory <= 4096 && db.task.memory % 1024 == 0) ||
        (db.task.cpu == 1024 && db.task.memory >= 2048 && db.task.memory <= 8192 && db.task.memory % 1024 == 0) ||
        (db.task.cpu == 2048 && db.task.memory >= 4096 && db.task.memory <= 16384 && db.task.memory % 1024 == 0) ||
        (db.task.cpu == 4096 && db.task.memory >= 8192 && db.task.memory <= 30720 && db.task.memory % 1024 == 0) ||
        (db.task.cpu == 8192 && db.task.memory >= 16384 && db.task.memory <= 61440 && db.task.memory % 4096 == 0) ||
        (db.task.cpu == 16384 && db.task.memory >= 32768 && db.task.memory <= 122880 && db.task.memory % 8192 == 0)
      )
    ])
    error_message = "task cpu/memory must be a valid Fargate combination (e.g. 1024 CPU with 2048-8192 MiB in 1024 steps)."
  }

  validation {
    condition     = alltrue([for db in values(var.databases) : db.lock_wait_timeout_seconds >= 1 && db.lock_wait_timeout_seconds <= 86400 && (db.jobs == null ? true : db.jobs >= 1 && db.jobs <= 64)])
    error_message = "lock_wait_timeout_seconds must be between 1 and 86400, and jobs (when set) between 1 and 64."
  }

  validation {
    # pgautodumper.contract.BackupRequest: at least 1 MiB (tables this big or bigger stream
    # by COPY in parallel parts; 64 MiB by default).
    condition     = alltrue([for db in values(var.databases) : db.stream_threshold_bytes >= 1048576 && floor(db.stream_threshold_bytes) == db.stream_threshold_bytes])
    error_message = "stream_threshold_bytes must be a whole number of bytes, at least 1048576 (1 MiB)."
  }

  validation {
    condition     = alltrue([for db in values(var.databases) : db.task.timeout_seconds >= 60 && db.task.timeout_seconds <= 604800])
    error_message = "task.timeout_seconds must be between 60 and 604800 (7 days)."
  }

  validation {
    condition = alltrue([
      for db in values(var.databases) : db.alarm_window_hours == null ? true : (db.alarm_window_hours >= 1 && db.alarm_window_hours <= 168)
    ])
    error_message = "alarm_window_hours must be between 1 and 168 (CloudWatch evaluates at most 7 days)."
  }
}

variable "secret_kms_key_arns" {
  description = "Customer-managed KMS keys that encrypt the database secrets (empty when they use the AWS-managed aws/secretsmanager key). Granted kms:Decrypt via Secrets Manager only."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.secret_kms_key_arns : can(regex("^arn:aws[a-z-]*:kms:", arn))])
    error_message = "secret_kms_key_arns must be KMS key ARNs."
  }
}

################################################################################
# Network
################################################################################

variable "subnet_ids" {
  description = "Private subnets for the Fargate tasks and the preflight Lambda. They need a route to the databases and to S3, Secrets Manager, ECR, CloudWatch Logs and Step Functions (NAT or VPC endpoints)."
  type        = list(string)

  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must name at least one subnet."
  }
}

variable "security_group_ids" {
  description = "Security groups for the tasks and the preflight Lambda. Leave empty and set create_security_group to let the module create an egress-only one."
  type        = list(string)
  default     = []
}

variable "create_security_group" {
  description = "Create an egress-only security group (HTTPS to AWS APIs, the database ports to database_cidr_blocks)? Needs vpc_id."
  type        = bool
  default     = true
}

variable "vpc_id" {
  description = "VPC of subnet_ids; required when create_security_group is true."
  type        = string
  default     = null
}

variable "database_ports" {
  description = "TCP ports the created security group may reach the databases on."
  type        = list(number)
  default     = [5432]

  validation {
    condition     = alltrue([for port in var.database_ports : port >= 1 && port <= 65535])
    error_message = "database_ports must be TCP ports (1-65535)."
  }
}

variable "database_cidr_blocks" {
  description = "CIDR blocks of the databases, for the created security group's egress rule."
  type        = list(string)
  default     = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]

  validation {
    condition     = alltrue([for cidr in var.database_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "database_cidr_blocks must be CIDR blocks."
  }
}

variable "https_egress_cidr_blocks" {
  description = "Where the created security group may open HTTPS connections (AWS APIs through NAT or endpoints)."
  type        = list(string)
  default     = ["0.0.0.0/0"]

  validation {
    condition     = alltrue([for cidr in var.https_egress_cidr_blocks : can(cidrhost(cidr, 0))])
    error_message = "https_egress_cidr_blocks must be CIDR blocks."
  }
}

variable "assign_public_ip" {
  description = "Give the Fargate tasks a public IP? Only for subnets without NAT; private subnets are the norm."
  type        = bool
  default     = false
}

################################################################################
# Storage and encryption
################################################################################

variable "create_bucket" {
  description = "Create the backup bucket? When false, bucket_name names an existing bucket that you configure (encryption, versioning, Object Lock) yourself."
  type        = bool
  default     = true
}

variable "bucket_name" {
  description = "Name of the backup bucket. Required when create_bucket is false; when null, a name is generated from name_prefix."
  type        = string
  default     = null

  validation {
    condition     = var.bucket_name == null ? true : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be a valid S3 bucket name."
  }
}

variable "bucket_prefix" {
  description = "Key prefix under which the backups live (PREFIX in s3://BUCKET/PREFIX/NAME/...). No leading or trailing slash."
  type        = string
  default     = "backups"

  validation {
    condition     = var.bucket_prefix == "" || can(regex("^[A-Za-z0-9!_.*'()-]+(/[A-Za-z0-9!_.*'()-]+)*$", var.bucket_prefix))
    error_message = "bucket_prefix must be empty or path segments without leading/trailing slashes."
  }
}

variable "create_kms_key" {
  description = "Create the customer-managed KMS key (rotation on) for the bucket, logs, topic, queue, schedules and state machine? When false, kms_key_arn names yours; its policy must allow the services listed in the README."
  type        = bool
  default     = true
}

variable "kms_key_arn" {
  description = "Existing customer-managed KMS key; required when create_kms_key is false."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "kms_key_deletion_window_in_days" {
  description = "Waiting period before a destroyed KMS key is deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_in_days >= 7 && var.kms_key_deletion_window_in_days <= 30
    error_message = "kms_key_deletion_window_in_days must be between 7 and 30."
  }
}

variable "enable_object_lock" {
  description = "Create the bucket with S3 Object Lock and a default retention (only when create_bucket is true)? Prune skips locked objects; the prune role is denied s3:BypassGovernanceRetention."
  type        = bool
  default     = false
}

variable "object_lock" {
  description = "Default Object Lock retention applied to new objects when enable_object_lock is true."
  type = object({
    mode = optional(string, "GOVERNANCE")
    days = optional(number, 30)
  })
  default = {}

  validation {
    condition     = contains(["GOVERNANCE", "COMPLIANCE"], var.object_lock.mode)
    error_message = "object_lock.mode must be GOVERNANCE or COMPLIANCE."
  }

  validation {
    condition     = var.object_lock.days >= 1 && var.object_lock.days <= 36500
    error_message = "object_lock.days must be between 1 and 36500."
  }
}

variable "enable_tls_only_bucket_policy" {
  description = "Attach a bucket policy that denies any request not made over TLS? Turn off only for the emulator (moto applies conditional Denies to every request)."
  type        = bool
  default     = true
}

variable "noncurrent_version_expiration_days" {
  description = "Days after which overwritten/deleted (noncurrent) object versions are expired."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_version_expiration_days >= 1
    error_message = "noncurrent_version_expiration_days must be at least 1."
  }
}

variable "force_destroy_bucket" {
  description = "Allow terraform destroy to delete a bucket that still holds backups? Only for throwaway environments."
  type        = bool
  default     = false
}

################################################################################
# Compute: task image, Fargate, Lambda
################################################################################

variable "task_image" {
  description = "URI of the task image built from task_image/Dockerfile, pinned by digest (REPO@sha256:...) or immutable tag."
  type        = string

  validation {
    condition     = length(trimspace(var.task_image)) > 0 && !endswith(var.task_image, ":latest")
    error_message = "task_image must be set and must not use the mutable :latest tag."
  }
}

variable "task_cpu_architecture" {
  description = "CPU architecture of the task image: X86_64 or ARM64."
  type        = string
  default     = "X86_64"

  validation {
    condition     = contains(["X86_64", "ARM64"], var.task_cpu_architecture)
    error_message = "task_cpu_architecture must be X86_64 or ARM64."
  }
}

variable "task_defaults" {
  description = "CPU/memory of the task definitions; each execution may override them with its database's task sizing."
  type = object({
    cpu    = optional(number, 1024)
    memory = optional(number, 2048)
  })
  default = {}
}

variable "verify_ephemeral_storage_gib" {
  description = "Ephemeral storage of the verify task (GiB, 21-200): holds its throwaway PostgreSQL data directory, so size it to the largest restored database."
  type        = number
  default     = 50

  validation {
    condition     = var.verify_ephemeral_storage_gib >= 21 && var.verify_ephemeral_storage_gib <= 200
    error_message = "verify_ephemeral_storage_gib must be between 21 and 200."
  }
}

variable "lambda_zip_path" {
  description = "Path of the Lambda artifact built by `make package` (one zip, nine handlers). Null means build/lambda/pgautodumper-lambda.zip in the repository."
  type        = string
  default     = null
}

variable "lambda_runtime" {
  description = "Python runtime of the Lambda functions."
  type        = string
  default     = "python3.12"

  validation {
    condition     = contains(["python3.11", "python3.12", "python3.13"], var.lambda_runtime)
    error_message = "lambda_runtime must be python3.11, python3.12 or python3.13."
  }
}

variable "lambda_architecture" {
  description = "Architecture of the Lambda functions: x86_64 or arm64 (the artifact must match)."
  type        = string
  default     = "x86_64"

  validation {
    condition     = contains(["x86_64", "arm64"], var.lambda_architecture)
    error_message = "lambda_architecture must be x86_64 or arm64."
  }
}

variable "lambda_reserved_concurrency" {
  description = "Reserved concurrency of each of the nine functions; null reserves nothing (they share the account's unreserved pool). Lambda keeps at least 100 of the account's concurrency unreserved, so reserving 9 x N fails on an account whose quota is below 100 + 9 x N."
  type        = number
  default     = null

  validation {
    # https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html: "You can
    # reserve up to the Unreserved account concurrency value minus 100".
    condition     = var.lambda_reserved_concurrency == null ? true : var.lambda_reserved_concurrency >= 1
    error_message = "lambda_reserved_concurrency must be null (reserve nothing) or at least 1."
  }
}

variable "size_anomaly_fraction" {
  description = "Record flags a backup whose stored size is below this fraction of the previous complete backup's (0.5: less than half). The run then succeeds with a warning; 0 turns the check off."
  type        = number
  default     = 0.5

  validation {
    # pgautodumper.record.anomaly_fraction accepts the same range.
    condition     = var.size_anomaly_fraction >= 0 && var.size_anomaly_fraction <= 1
    error_message = "size_anomaly_fraction must be between 0 and 1 (0.5 flags a backup less than half the size of the previous one)."
  }
}

variable "log_retention_days" {
  description = "Retention of every log group the module creates."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (e.g. 30, 90, 365)."
  }
}

################################################################################
# Scheduling and alerting
################################################################################

variable "scheduler_retry_policy" {
  description = "How EventBridge Scheduler retries a StartExecution that fails before giving the event to the dead-letter queue."
  type = object({
    maximum_retry_attempts       = optional(number, 10)
    maximum_event_age_in_seconds = optional(number, 3600)
  })
  default = {}

  validation {
    condition     = var.scheduler_retry_policy.maximum_retry_attempts >= 0 && var.scheduler_retry_policy.maximum_retry_attempts <= 185
    error_message = "maximum_retry_attempts must be between 0 and 185."
  }

  validation {
    condition     = var.scheduler_retry_policy.maximum_event_age_in_seconds >= 60 && var.scheduler_retry_policy.maximum_event_age_in_seconds <= 86400
    error_message = "maximum_event_age_in_seconds must be between 60 and 86400."
  }
}

variable "alarm_window_hours" {
  description = "Dead-man's switch: alarm when a database has had no BackupSucceeded metric for this many hours (26 suits a daily schedule). A database may override it."
  type        = number
  default     = 26

  validation {
    condition     = var.alarm_window_hours >= 1 && var.alarm_window_hours <= 168
    error_message = "alarm_window_hours must be between 1 and 168 (CloudWatch evaluates at most 7 days)."
  }
}

variable "alarm_email_addresses" {
  description = "E-mail addresses subscribed to the alert topic (each must confirm the subscription)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for address in var.alarm_email_addresses : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", address))])
    error_message = "alarm_email_addresses must be e-mail addresses."
  }
}

variable "slack_webhook_kms_key_arn" {
  description = "Customer-managed KMS key that encrypts the Slack webhook secret (null when it uses the AWS-managed aws/secretsmanager key). Notify is granted kms:Decrypt on it via Secrets Manager only."
  type        = string
  default     = null

  validation {
    condition     = var.slack_webhook_kms_key_arn == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.slack_webhook_kms_key_arn))
    error_message = "slack_webhook_kms_key_arn must be a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)."
  }
}

variable "slack_webhook_secret_arn" {
  description = "Secrets Manager secret holding a Slack incoming-webhook URL; null disables Slack notifications."
  type        = string
  default     = null

  validation {
    condition     = var.slack_webhook_secret_arn == null ? true : can(regex("^arn:aws[a-z-]*:secretsmanager:", var.slack_webhook_secret_arn))
    error_message = "slack_webhook_secret_arn must be a Secrets Manager secret ARN."
  }
}

################################################################################
# The vault: an off-site copy under Object Lock (modules/vault creates it)
################################################################################

variable "vault" {
  description = <<-EOT
    Replicate every backup object to a vault bucket in another AWS account (and optionally
    another region) created by modules/vault: COMPLIANCE-mode Object Lock, its own KMS key,
    delete markers not replicated, replica modification sync off. bucket_arn and
    kms_key_arn are the vault module's outputs; account_id is the vault account.
    replication_time_control turns on S3 RTC (15-minute SLA, extra cost per GB);
    replication metrics are always on and two alarms watch them (failed operations, and
    replication latency above alarm_latency_minutes). verify_schedule (a cron/rate
    expression) adds, per database, a schedule "<key>-vault" whose run (mode "verify")
    restores the newest backup found in the vault bucket and writes its verdict there;
    pass the vault_verify_role_arns output to modules/vault's verify_role_arns (see the
    README, "The vault"). null: no vault.
  EOT
  type = object({
    bucket_arn               = string
    kms_key_arn              = string
    account_id               = string
    storage_class            = optional(string, "STANDARD")
    replication_time_control = optional(bool, false)
    alarm_latency_minutes    = optional(number, 60)
    verify_schedule          = optional(string)
  })
  default = null

  validation {
    condition     = var.vault == null ? true : can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.vault.bucket_arn))
    error_message = "vault.bucket_arn must be an S3 bucket ARN (arn:aws:s3:::NAME)."
  }

  validation {
    condition     = var.vault == null ? true : can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.vault.kms_key_arn)) && can(regex("^[0-9]{12}$", var.vault.account_id))
    error_message = "vault.kms_key_arn must be a KMS key ARN and vault.account_id a 12-digit account id."
  }

  validation {
    # Replicas in Glacier Flexible Retrieval / Deep Archive are not restorable by streaming.
    condition     = var.vault == null ? true : contains(["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR"], var.vault.storage_class)
    error_message = "vault.storage_class must be an instantly readable class: STANDARD, STANDARD_IA, ONEZONE_IA, INTELLIGENT_TIERING or GLACIER_IR."
  }

  validation {
    condition     = var.vault == null ? true : (var.vault.alarm_latency_minutes >= 15 && var.vault.alarm_latency_minutes <= 1440 && (var.vault.verify_schedule == null ? true : can(regex("^(cron|rate|at)\\(.+\\)$", var.vault.verify_schedule))))
    error_message = "vault.alarm_latency_minutes must be between 15 and 1440, and vault.verify_schedule an EventBridge Scheduler expression."
  }
}
