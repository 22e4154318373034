output "state_machine_arn" {
  description = "ARN of the backup state machine."
  value       = aws_sfn_state_machine.this.arn
}

output "state_machine_console_url" {
  description = "The state machine in the Step Functions console (start an on-demand run from here)."
  value       = "https://${local.region}.console.aws.amazon.com/states/home?region=${local.region}#/statemachines/view/${urlencode(aws_sfn_state_machine.this.arn)}"
}

output "bucket_name" {
  description = "The backup bucket."
  value       = local.bucket_name
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = local.bucket_arn
}

output "bucket_prefix" {
  description = "Key prefix of the backups in the bucket."
  value       = var.bucket_prefix
}

output "kms_key_arn" {
  description = "The customer-managed key that encrypts backups, logs, topic, queue, schedules and executions."
  value       = local.kms_key_arn
}

output "sns_topic_arn" {
  description = "Alert topic: failures and alarms. Subscribe your on-call tooling here."
  value       = aws_sns_topic.alerts.arn
}

output "example_on_demand_input" {
  description = "A BackupRequest for the first database: paste it as the execution input to run a backup now (set verify to true to verify too, or mode to \"verify\" to only verify the newest backup)."
  value       = jsonencode(local.backup_requests[local.database_names[0]])
}

output "on_demand_inputs" {
  description = "The BackupRequest of each database, as the schedules send it."
  value       = { for name, request in local.backup_requests : name => jsonencode(request) }
}

output "cluster_arn" {
  description = "ECS cluster the dump and verify tasks run in."
  value       = aws_ecs_cluster.this.arn
}

output "task_definition_arns" {
  description = "Task definitions of the backup and verify steps."
  value       = { for step, definition in aws_ecs_task_definition.this : step => definition.arn }
}

output "function_arns" {
  description = "The nine Lambda functions, by handler name (eight workflow steps and the hourly freshness function)."
  value       = local.function_arns
}

output "schedule_group_name" {
  description = "EventBridge Scheduler group holding every schedule."
  value       = aws_scheduler_schedule_group.this.name
}

output "scheduler_dead_letter_queue_url" {
  description = "Queue receiving schedule starts that failed after all retries."
  value       = aws_sqs_queue.scheduler_dlq.id
}

output "security_group_id" {
  description = "The created egress-only security group (null when not created)."
  value       = var.create_security_group ? aws_security_group.this[0].id : null
}

output "task_role_arn" {
  description = "Role of the dump/verify task (grant it network access to the databases, nothing else)."
  value       = aws_iam_role.task.arn
}

output "vault_replication_role_arn" {
  description = "Role S3 Replication uses to copy backups to the vault (created only when vault is set; named from name_prefix, so known before it exists: pass it to modules/vault's replication_role_arn)."
  value       = local.vault_replication_role_arn
}

output "vault_verify_role_arns" {
  description = "The roles a vault verify run uses (the task, preflight, record_verify, task_failure and release_lock functions): pass them to modules/vault's verify_role_arns when vault.verify_schedule is set."
  value = concat(
    [aws_iam_role.task.arn],
    [for name in ["preflight", "record_verify", "task_failure", "release_lock"] : aws_iam_role.lambda[name].arn],
  )
}

output "dashboard_url" {
  description = "The CloudWatch dashboard (the first one when there are more than 50 databases; its header links the others). Every notification links it."
  value       = local.dashboard_urls[0]
  depends_on  = [aws_cloudwatch_dashboard.this]
}

output "dashboard_urls" {
  description = "By database: the URL of the dashboard that shows it."
  value = merge([
    for index, names in local.dashboard_chunks : { for name in names : name => local.dashboard_urls[index] }
  ]...)
  depends_on = [aws_cloudwatch_dashboard.this]
}
