################################################################################
# Freshness: every hour, the freshness function lists the bucket and publishes,
# per backup name, HoursSinceLastBackup and HoursSinceLastVerify (namespace
# local.metrics_namespace, dimension Name), which the dashboard graphs against
# the alarm window. The numbers come from the bucket itself, so they keep
# growing when nothing runs at all.
#
# Triggered by a scheduled EventBridge rule, not an EventBridge Scheduler
# schedule, because that is the smaller grant: a rule invokes Lambda through the
# function's resource-based policy, one statement that lets events.amazonaws.com
# invoke this function only for this rule
# (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-lambda-permissions),
# while a schedule needs an execution role that scheduler.amazonaws.com assumes,
# with lambda:InvokeFunction and, for the module's KMS-encrypted schedules,
# kms:Decrypt on the key
# (https://docs.aws.amazon.com/lambda/latest/dg/with-eventbridge-scheduler.html).
# Either invokes the function asynchronously; a missed hour is redone the next.
################################################################################

resource "aws_cloudwatch_event_rule" "freshness" {
  name                = "${var.name_prefix}-freshness"
  description         = "pgautodumper: publish hours since each backup name's last backup and last verify"
  schedule_expression = "rate(1 hour)"
  state               = "ENABLED"
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "freshness" {
  rule      = aws_cloudwatch_event_rule.freshness.name
  target_id = "freshness"
  arn       = aws_lambda_function.this["freshness"].arn

  # An hour-old event is superseded by the next one.
  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 3
  }
}

resource "aws_lambda_permission" "freshness" {
  statement_id  = "HourlyRuleInvokes"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["freshness"].function_name
  principal     = "events.${local.dns_suffix}"
  # Only this rule (confused-deputy guard); the rule's ARN names this account.
  source_arn = aws_cloudwatch_event_rule.freshness.arn
}
