# A production-shaped deployment into an existing VPC: two databases, e-mail
# alerts, Slack, Object Lock in GOVERNANCE mode.

provider "aws" {
  region = var.region
}

module "pgautodumper" {
  source = "../.."

  name_prefix = "pgautodumper"
  task_image  = var.task_image

  vpc_id     = var.vpc_id
  subnet_ids = var.subnet_ids

  databases = {
    orders = {
      secret_arn      = var.orders_secret_arn
      backup_schedule = "cron(15 2 * * ? *)"
      verify_schedule = "cron(0 6 ? * SUN *)"
      retention       = { keep_last = 7, keep_daily = 14, keep_weekly = 8, keep_monthly = 12 }
      task            = { cpu = 2048, memory = 4096, timeout_seconds = 14400 }
      # Tables of 256 MiB and more are copied in parallel parts (default 64 MiB).
      stream_threshold_bytes = 268435456
    }
    billing = {
      secret_arn        = var.billing_secret_arn
      schedule_timezone = "Europe/Berlin"
      notify_on_success = true
      enable_verify     = false
    }
  }

  enable_object_lock = true
  object_lock        = { mode = "GOVERNANCE", days = 14 }

  alarm_email_addresses    = var.alarm_email_addresses
  slack_webhook_secret_arn = var.slack_webhook_secret_arn

  tags = {
    Team = "platform"
  }
}
