"""Freshness (hourly): hours since each name's last backup and last passing verify, as metrics.

The dashboard graphs them against the alarm window; the numbers come from the
bucket itself (pgautodumper.status), so they are right even when no execution
ran at all.
"""

from lambdas import NAMESPACE, powertools
from pgautodumper import status

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    return status.publish_freshness(NAMESPACE).model_dump(mode="json")
