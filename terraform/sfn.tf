################################################################################
# The backup workflow. The definition is the same file the local runtime runs;
# Terraform only fills in the ARNs.
################################################################################

locals {
  state_machine_definition_path = "${path.module}/../state_machine/backup.asl.json"
}

resource "aws_sfn_state_machine" "this" {
  #checkov:skip=CKV_AWS_285:Execution data is deliberately kept out of the logs (include_execution_data = false); it is in the encrypted execution history.
  name     = local.state_machine_name
  role_arn = aws_iam_role.state_machine.arn
  type     = "STANDARD"

  definition = templatefile(local.state_machine_definition_path, {
    lookup_secret_function_arn = local.function_arns["lookup_secret"]
    preflight_function_arn     = local.function_arns["preflight"]
    record_function_arn        = local.function_arns["record"]
    record_verify_function_arn = local.function_arns["record_verify"]
    task_failure_function_arn  = local.function_arns["task_failure"]
    prune_function_arn         = local.function_arns["prune"]
    release_lock_function_arn  = local.function_arns["release_lock"]
    notify_function_arn        = local.function_arns["notify"]
    cluster_arn                = aws_ecs_cluster.this.arn
    backup_task_definition_arn = aws_ecs_task_definition.this["backup"].arn
    verify_task_definition_arn = aws_ecs_task_definition.this["verify"].arn
    container_name             = local.container_name
    subnet_ids                 = join(",", var.subnet_ids)
    security_group_ids         = join(",", local.security_groups)
    assign_public_ip           = var.assign_public_ip ? "ENABLED" : "DISABLED"
  })

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    level                  = "ERROR"
    include_execution_data = false
  }

  tracing_configuration {
    enabled = true
  }

  encryption_configuration {
    type                              = "CUSTOMER_MANAGED_KMS_KEY"
    kms_key_id                        = local.kms_key_arn
    kms_data_key_reuse_period_seconds = 300
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.state_machine]
}
