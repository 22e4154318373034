################################################################################
# Nine functions from one artifact (`make package`). Handlers are thin glue in
# lambdas/<name>.py; only preflight reaches the databases, so only it is in the VPC.
# Eight are steps of the state machine; freshness runs hourly on its own
# (freshness.tf) and publishes how old each name's last backup and verify are.
################################################################################

locals {
  lambda_zip_path = coalesce(var.lambda_zip_path, "${path.module}/../build/lambda/pgautodumper-lambda.zip")

  functions = {
    lookup_secret = { timeout = 30, memory_size = 256, in_vpc = false }
    preflight     = { timeout = 120, memory_size = 512, in_vpc = true }
    record        = { timeout = 60, memory_size = 256, in_vpc = false }
    record_verify = { timeout = 60, memory_size = 256, in_vpc = false }
    task_failure  = { timeout = 60, memory_size = 256, in_vpc = false }
    prune         = { timeout = 300, memory_size = 512, in_vpc = false }
    release_lock  = { timeout = 30, memory_size = 256, in_vpc = false }
    notify        = { timeout = 60, memory_size = 256, in_vpc = false }
    freshness     = { timeout = 300, memory_size = 256, in_vpc = false }
  }

  function_names = { for name, _ in local.functions : name => "${var.name_prefix}-${replace(name, "_", "-")}" }

  lambda_common_environment = {
    POWERTOOLS_SERVICE_NAME      = "pgautodumper"
    POWERTOOLS_METRICS_NAMESPACE = local.metrics_namespace
  }

  lambda_environment = {
    lookup_secret = local.lambda_common_environment
    preflight     = local.lambda_common_environment
    record = merge(local.lambda_common_environment, {
      PGAUTODUMPER_SIZE_ANOMALY_FRACTION = tostring(var.size_anomaly_fraction)
    })
    record_verify = local.lambda_common_environment
    # Where the tasks log (ecs.tf): the failure report links the task's own log stream.
    task_failure = merge(local.lambda_common_environment, {
      PGAUTODUMPER_TASK_LOG_GROUP         = aws_cloudwatch_log_group.task.name
      PGAUTODUMPER_TASK_LOG_STREAM_PREFIX = "${local.task_log_stream_prefix}/${local.container_name}"
      PGAUTODUMPER_CLUSTER_ARN            = aws_ecs_cluster.this.arn
    })
    prune        = local.lambda_common_environment
    release_lock = local.lambda_common_environment
    notify = merge(
      local.lambda_common_environment,
      # Both known at plan time (names, not attributes). Every notification links the
      # dashboard (dashboard.tf): with more than one, the first, whose header links the others.
      { PGAUTODUMPER_SNS_TOPIC_ARN = local.alerts_topic_arn, PGAUTODUMPER_DASHBOARD_URL = local.dashboard_urls[0] },
      var.slack_webhook_secret_arn == null ? {} : { PGAUTODUMPER_SLACK_WEBHOOK_SECRET_ARN = var.slack_webhook_secret_arn },
    )
    # The module's own bucket only: the vault is watched by its replication alarms.
    freshness = merge(local.lambda_common_environment, {
      PGAUTODUMPER_BUCKET = local.bucket_name
      PGAUTODUMPER_PREFIX = var.bucket_prefix
    })
  }

  function_arns = merge(
    { for name, fn in aws_lambda_function.this : name => fn.arn },
    { preflight = aws_lambda_function.preflight.arn },
  )
}

resource "aws_lambda_function" "this" {
  for_each = { for name, fn in local.functions : name => fn if !fn.in_vpc }

  #checkov:skip=CKV_AWS_117:These functions call only AWS APIs (Secrets Manager, S3, SNS); only preflight talks to databases and it runs in the VPC.
  #checkov:skip=CKV_AWS_116:Step Functions invokes these synchronously (its Retry/Catch handle every failure); freshness is invoked hourly and a missed run is redone the next hour, so a DLQ would hold nothing worth replaying.
  #checkov:skip=CKV_AWS_272:The artifact is built by `make package` and deployed by Terraform from the same checkout; there is no signing profile to trust.
  function_name    = local.function_names[each.key]
  description      = "pgautodumper ${each.key}"
  role             = aws_iam_role.lambda[each.key].arn
  handler          = "lambdas.${each.key}.handler"
  runtime          = var.lambda_runtime
  architectures    = [var.lambda_architecture]
  filename         = local.lambda_zip_path
  source_code_hash = filebase64sha256(local.lambda_zip_path)
  timeout          = each.value.timeout
  memory_size      = each.value.memory_size
  # null (the default) leaves the function in the unreserved pool.
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  kms_key_arn                    = local.kms_key_arn

  environment {
    variables = local.lambda_environment[each.key]
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda[each.key].name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.lambda]
}

resource "aws_lambda_function" "preflight" {
  #checkov:skip=CKV_AWS_116:Invoked synchronously by Step Functions, whose Retry/Catch handle every failure; a DLQ applies to async invokes only.
  #checkov:skip=CKV_AWS_272:The artifact is built by `make package` and deployed by Terraform from the same checkout; there is no signing profile to trust.
  function_name                  = local.function_names["preflight"]
  description                    = "pgautodumper preflight: connect, size the dump, take the lock"
  role                           = aws_iam_role.lambda["preflight"].arn
  handler                        = "lambdas.preflight.handler"
  runtime                        = var.lambda_runtime
  architectures                  = [var.lambda_architecture]
  filename                       = local.lambda_zip_path
  source_code_hash               = filebase64sha256(local.lambda_zip_path)
  timeout                        = local.functions.preflight.timeout
  memory_size                    = local.functions.preflight.memory_size
  reserved_concurrent_executions = var.lambda_reserved_concurrency
  kms_key_arn                    = local.kms_key_arn

  environment {
    variables = local.lambda_environment["preflight"]
  }

  vpc_config {
    subnet_ids         = var.subnet_ids
    security_group_ids = local.security_groups
  }

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.lambda["preflight"].name
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.lambda]
}
