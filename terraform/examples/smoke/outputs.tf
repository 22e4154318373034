output "state_machine_arn" {
  description = "The state machine the smoke execution runs on."
  value       = module.pgautodumper.state_machine_arn
}

output "bucket_name" {
  description = "The backup bucket (emptied and deleted on destroy)."
  value       = module.pgautodumper.bucket_name
}

output "on_demand_input" {
  description = "The BackupRequest of the smoke database, as its schedule would send it."
  value       = module.pgautodumper.on_demand_inputs["smoke"]
}

output "notification_queue_url" {
  description = "Queue subscribed to the alert topic (raw messages)."
  value       = aws_sqs_queue.notifications.id
}

output "sns_topic_arn" {
  description = "The module's alert topic."
  value       = module.pgautodumper.sns_topic_arn
}

output "dashboard_url" {
  description = "The dashboard every notification links."
  value       = module.pgautodumper.dashboard_url
}

output "freshness_function_arn" {
  description = "The hourly freshness function (the smoke test invokes it once)."
  value       = module.pgautodumper.function_arns["freshness"]
}
