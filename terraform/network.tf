################################################################################
# An egress-only security group for the tasks and the preflight Lambda: they
# open connections (to the databases and AWS APIs) and accept none.
################################################################################

resource "aws_security_group" "this" {
  #checkov:skip=CKV2_AWS_5:Attached to the preflight Lambda (vpc_config) and to every task through the state machine's RunTask network configuration, which checkov cannot follow.
  count = var.create_security_group ? 1 : 0

  name_prefix = "${var.name_prefix}-"
  description = "${var.name_prefix}: backup tasks and preflight; egress only"
  vpc_id      = var.vpc_id
  tags        = merge(local.tags, { Name = var.name_prefix })

  lifecycle {
    create_before_destroy = true
  }
}

resource "aws_vpc_security_group_egress_rule" "https" {
  for_each = var.create_security_group ? toset(var.https_egress_cidr_blocks) : toset([])

  security_group_id = aws_security_group.this[0].id
  description       = "HTTPS to AWS APIs (S3, Secrets Manager, ECR, Logs, Step Functions)"
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = each.value
  tags              = local.tags
}

resource "aws_vpc_security_group_egress_rule" "database" {
  for_each = var.create_security_group ? {
    for pair in setproduct(var.database_ports, var.database_cidr_blocks) : "${pair[0]}-${pair[1]}" => {
      port = pair[0]
      cidr = pair[1]
    }
  } : {}

  security_group_id = aws_security_group.this[0].id
  description       = "PostgreSQL on port ${each.value.port}"
  ip_protocol       = "tcp"
  from_port         = each.value.port
  to_port           = each.value.port
  cidr_ipv4         = each.value.cidr
  tags              = local.tags
}
