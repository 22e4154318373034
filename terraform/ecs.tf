################################################################################
# The dump and verify tasks: one image, one container name, two task
# definitions. The state machine passes every input as a container override
# (names only: secret ARN and VersionId, bucket, keys); nothing secret is ever
# in a task definition or an override.
################################################################################

resource "aws_ecs_cluster" "this" {
  name = local.cluster_name

  setting {
    name  = "containerInsights"
    value = "enabled"
  }

  configuration {
    execute_command_configuration {
      kms_key_id = local.kms_key_arn
      logging    = "OVERRIDE"
      log_configuration {
        cloud_watch_encryption_enabled = true
        cloud_watch_log_group_name     = aws_cloudwatch_log_group.task.name
      }
    }
  }

  tags = local.tags
}

resource "aws_ecs_cluster_capacity_providers" "this" {
  cluster_name       = aws_ecs_cluster.this.name
  capacity_providers = ["FARGATE"]

  default_capacity_provider_strategy {
    capacity_provider = "FARGATE"
    weight            = 1
  }
}

locals {
  # The image's user (task_image/Dockerfile); repeated here so a changed image
  # cannot silently run as root.
  task_user = "10001:10001"

  # A task's log stream is <prefix>/<container name>/<task id> (the awslogs driver).
  task_log_stream_prefix = "task"

  # HOME and TMPDIR (task_image/Dockerfile) live on this volume, the only writable path.
  # The verify step keeps its throwaway PostgreSQL there; the backup step streams and
  # writes nothing but the CA file of ssl_root_cert (libpq reads sslrootcert from a file).
  scratch_volume = "scratch"
  scratch_path   = "/scratch"
  scratch_mount = {
    sourceVolume  = local.scratch_volume
    containerPath = local.scratch_path
    readOnly      = false
  }

  container_base = {
    name                   = local.container_name
    image                  = var.task_image
    essential              = true
    user                   = local.task_user
    readonlyRootFilesystem = true
    privileged             = false
    # Fargate needs only task-level memory; moto's ECS backend rejects a
    # Fargate container without its own, so it is set here too (the state
    # machine overrides both with the request's task.memory).
    memory = var.task_defaults.memory
    linuxParameters = {
      initProcessEnabled = true
      capabilities       = { drop = ["ALL"] }
    }
    # Deliberately no "environment" and no "secrets": see invariant 4.
    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.task.name
        awslogs-region        = local.region
        awslogs-stream-prefix = local.task_log_stream_prefix
      }
    }
  }

  task_definitions = {
    backup = merge(local.container_base, {
      command     = ["backup"]
      mountPoints = [local.scratch_mount]
    })
    verify = merge(local.container_base, {
      command     = ["verify"]
      mountPoints = [local.scratch_mount]
    })
  }
}

resource "aws_ecs_task_definition" "this" {
  for_each = local.task_definitions

  family                   = "${var.name_prefix}-${each.key}"
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.task_defaults.cpu
  memory                   = var.task_defaults.memory
  task_role_arn            = aws_iam_role.task.arn
  execution_role_arn       = aws_iam_role.task_execution.arn
  container_definitions    = jsonencode([each.value])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = var.task_cpu_architecture
  }

  volume {
    name = local.scratch_volume
  }

  dynamic "ephemeral_storage" {
    for_each = each.key == "verify" ? [var.verify_ephemeral_storage_gib] : []
    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  tags = local.tags
}
