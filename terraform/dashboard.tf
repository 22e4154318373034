################################################################################
# The dashboard: one row per database, from the metrics the functions publish
# (EMF, namespace local.metrics_namespace, dimension Name):
#   - hours since the last backup (HoursSinceLastBackup, freshness.tf) against the
#     database's alarm window (a horizontal annotation), and since the last
#     passing verify (HoursSinceLastVerify, right axis);
#   - stored bytes (BackupBytes) and duration (BackupDurationSeconds) of each backup
#     (Record);
#   - the recovery time measured by verify runs (RestoreSeconds, RecordVerify);
#   - failures by error name (BackupFailed, Notify; dimensions Name and Error): a
#     SEARCH expression over the Error dimension of that Name.
# Body syntax: https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html
# Search expressions: https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/search-expression-syntax.html
################################################################################

locals {
  # A dashboard body holds at most 500 widgets (body structure, above) and 2,500 metrics
  # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/cloudwatch_limits.html).
  # Four widgets and six metrics or expressions per database, plus a header: 50 databases
  # per dashboard stays far below both and still scrolls; more databases get more
  # dashboards (<prefix>-2, ...), each header linking them all.
  dashboard_databases_each = 50
  dashboard_chunks         = chunklist(local.database_names, local.dashboard_databases_each)
  dashboard_names = [
    for index in range(length(local.dashboard_chunks)) : index == 0 ? var.name_prefix : "${var.name_prefix}-${index + 1}"
  ]
  # Known before apply (names, not attributes): Notify's environment links the first.
  dashboard_urls = [
    for name in local.dashboard_names :
    "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards/dashboard/${name}"
  ]

  dashboard_period = 3600 # the freshness function publishes hourly
  dashboard_widget = { width = 6, height = 6 }
  dashboard_header = 3 # rows

  # Per database, left to right. Metric arrays: [namespace, metric, dimension, value, {options}].
  dashboard_rows = {
    for name in local.database_names : name => [
      {
        type = "metric"
        properties = {
          title  = "${name}: hours since the last backup"
          view   = "timeSeries"
          region = local.region
          period = local.dashboard_period
          stat   = "Maximum"
          metrics = [
            [local.metrics_namespace, "HoursSinceLastBackup", "Name", name, { label = "since the last backup" }],
            [local.metrics_namespace, "HoursSinceLastVerify", "Name", name, { label = "since the last passing verify", yAxis = "right" }],
          ]
          annotations = {
            horizontal = [{
              label = "alarm window (${local.alarm_window_hours[name]} h)"
              value = local.alarm_window_hours[name]
              color = "#d62728"
            }]
          }
          yAxis = {
            left  = { min = 0, label = "hours", showUnits = false }
            right = { min = 0, label = "hours (verify)", showUnits = false }
          }
        }
      },
      {
        type = "metric"
        properties = {
          title  = "${name}: stored bytes and duration"
          view   = "timeSeries"
          region = local.region
          period = local.dashboard_period
          stat   = "Maximum"
          metrics = [
            [local.metrics_namespace, "BackupBytes", "Name", name, { label = "stored bytes" }],
            [local.metrics_namespace, "BackupDurationSeconds", "Name", name, { label = "duration (s)", yAxis = "right" }],
          ]
          yAxis = {
            left  = { min = 0, label = "bytes", showUnits = false }
            right = { min = 0, label = "seconds", showUnits = false }
          }
        }
      },
      {
        type = "metric"
        properties = {
          title  = "${name}: recovery time (verify runs)"
          view   = "timeSeries"
          region = local.region
          period = local.dashboard_period
          stat   = "Maximum"
          metrics = [
            [local.metrics_namespace, "RestoreSeconds", "Name", name, { label = "restore (s)" }],
          ]
          yAxis = { left = { min = 0, label = "seconds", showUnits = false } }
        }
      },
      {
        type = "metric"
        properties = {
          title   = "${name}: failures by error name"
          view    = "timeSeries"
          stacked = true
          region  = local.region
          period  = local.dashboard_period
          stat    = "Sum"
          # One series per Error value of this Name; the label is the error's class name.
          metrics = [[{
            id         = "failures"
            expression = "SEARCH('{${local.metrics_namespace},Error,Name} MetricName=\"BackupFailed\" Name=\"${name}\"', 'Sum', ${local.dashboard_period})"
            label      = "$${PROP('Dim.Error')}"
          }]]
          yAxis = { left = { min = 0, label = "failed runs", showUnits = false } }
        }
      },
    ]
  }

  dashboard_links = join(" · ", [for index, url in local.dashboard_urls : "[${local.dashboard_names[index]}](${url})"])
}

resource "aws_cloudwatch_dashboard" "this" {
  count = length(local.dashboard_chunks)

  dashboard_name = local.dashboard_names[count.index]
  dashboard_body = jsonencode({
    start          = "-P14D"
    periodOverride = "inherit"
    widgets = concat(
      # PutDashboard's advice: say at the top that the dashboard is generated
      # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_PutDashboard.html).
      [{
        type   = "text"
        x      = 0
        y      = 0
        width  = 24
        height = local.dashboard_header
        properties = {
          markdown = join("\n\n", compact([
            "## pgautodumper: ${var.name_prefix} (${length(local.dashboard_chunks[count.index])} of ${length(local.database_names)} databases)",
            "Generated by Terraform (the pgautodumper module): edits made here are overwritten. Per database: hours since the last backup against its alarm window (red line; ${local.function_names["freshness"]} publishes it hourly from the bucket), stored bytes and duration, recovery time of verify runs, failures by error name.",
            length(local.dashboard_urls) > 1 ? "Dashboards: ${local.dashboard_links}" : "",
          ]))
        }
      }],
      flatten([
        for row, name in local.dashboard_chunks[count.index] : [
          for column, widget in local.dashboard_rows[name] : merge(widget, {
            x      = column * local.dashboard_widget.width
            y      = local.dashboard_header + row * local.dashboard_widget.height
            width  = local.dashboard_widget.width
            height = local.dashboard_widget.height
          })
        ]
      ]),
    )
  })
}
