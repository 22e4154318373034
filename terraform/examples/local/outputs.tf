output "state_machine_arn" {
  description = "The state machine the local runtime executes."
  value       = module.pgautodumper.state_machine_arn
}

output "bucket_name" {
  description = "Backup bucket in moto."
  value       = module.pgautodumper.bucket_name
}

output "database_secret_arn" {
  description = "Secret the test fills with a real PostgreSQL's connection (moto side)."
  value       = aws_secretsmanager_secret.database.arn
}

output "example_on_demand_input" {
  description = "Execution input for one backup of the local database."
  value       = module.pgautodumper.example_on_demand_input
}

output "function_arns" {
  description = "The six functions."
  value       = module.pgautodumper.function_arns
}

output "task_definition_arns" {
  description = "Backup and verify task definitions."
  value       = module.pgautodumper.task_definition_arns
}

output "cluster_arn" {
  description = "ECS cluster."
  value       = module.pgautodumper.cluster_arn
}
