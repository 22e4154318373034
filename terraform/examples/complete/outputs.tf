output "state_machine_console_url" {
  description = "Start an on-demand run here."
  value       = module.pgautodumper.state_machine_console_url
}

output "example_on_demand_input" {
  description = "Paste as the execution input."
  value       = module.pgautodumper.example_on_demand_input
}

output "bucket_name" {
  description = "The backup bucket."
  value       = module.pgautodumper.bucket_name
}

output "sns_topic_arn" {
  description = "Alert topic."
  value       = module.pgautodumper.sns_topic_arn
}

output "dashboard_url" {
  description = "The CloudWatch dashboard: hours since the last backup, sizes, recovery time, failures."
  value       = module.pgautodumper.dashboard_url
}
