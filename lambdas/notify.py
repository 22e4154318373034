"""Notify: SNS (and Slack when configured) on failure, warnings, or success when asked."""

from lambdas import powertools
from pgautodumper import notify
from pgautodumper.contract import parse_document

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    document = parse_document(event)
    return notify.run(document, metrics).model_dump(mode="json")
