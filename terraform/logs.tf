################################################################################
# Log groups: created here (not by the services) so each has the key and a
# retention period.
################################################################################

resource "aws_cloudwatch_log_group" "task" {
  name              = local.task_log_group_name
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "state_machine" {
  name              = "/aws/vendedlogs/states/${local.state_machine_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_group" "lambda" {
  for_each = local.functions

  name              = local.lambda_log_group_names[each.key]
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}
