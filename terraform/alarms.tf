################################################################################
# Silence is an alarm (invariant 7). Failures notify through the workflow, but
# a deleted schedule, a broken role or a stuck execution sends nothing: the
# per-database dead-man's switch catches those.
################################################################################

resource "aws_cloudwatch_metric_alarm" "backup_missing" {
  for_each = var.databases

  alarm_name        = "${var.name_prefix}-${each.key}-no-successful-backup"
  alarm_description = "No successful backup of ${each.key} in ${local.alarm_window_hours[each.key]} h. Check the schedule ${var.name_prefix}/${each.key}-backup, the latest executions of ${local.state_machine_name} and the scheduler dead-letter queue; the dashboard ${local.dashboard_urls[0]} shows the hours since the last backup. See the module README, 'Alarms'."
  namespace         = local.metrics_namespace
  metric_name       = "BackupSucceeded"
  dimensions        = { Name = each.key }
  statistic         = "Sum"
  # Hourly buckets across the whole window: the alarm fires only if every
  # bucket is below 1, and a bucket with no data at all counts as breaching.
  period              = 3600
  evaluation_periods  = local.alarm_window_hours[each.key]
  datapoints_to_alarm = local.alarm_window_hours[each.key]
  comparison_operator = "LessThanThreshold"
  threshold           = 1
  treat_missing_data  = "breaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

locals {
  execution_alarms = {
    failed    = { metric = "ExecutionsFailed", text = "failed" }
    timed-out = { metric = "ExecutionsTimedOut", text = "timed out" }
    aborted   = { metric = "ExecutionsAborted", text = "was aborted" }
  }
}

resource "aws_cloudwatch_metric_alarm" "executions" {
  for_each = local.execution_alarms

  alarm_name          = "${var.name_prefix}-executions-${each.key}"
  alarm_description   = "A ${local.state_machine_name} execution ${each.value.text}. Open the execution in the Step Functions console (its failed state and cause), then the task or Lambda logs. See the module README, 'Alarms'."
  namespace           = "AWS/States"
  metric_name         = each.value.metric
  dimensions          = { StateMachineArn = aws_sfn_state_machine.this.arn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "scheduler_dlq" {
  alarm_name          = "${var.name_prefix}-scheduler-dead-letters"
  alarm_description   = "EventBridge Scheduler could not start a backup execution (messages in ${aws_sqs_queue.scheduler_dlq.name}). Read a message for the error, fix the scheduler role or the state machine, start the missed run by hand, then purge the queue. See the module README, 'Alarms'."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.scheduler_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  threshold           = 1
  treat_missing_data  = "notBreaching"
  actions_enabled     = true
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}
