"""LookupSecret: the secret ARN → a ConnectionTarget with the secret version pinned."""

from lambdas import powertools
from pgautodumper.contract import parse_document
from pgautodumper.secrets import lookup_target

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    document = parse_document(event)
    return lookup_target(document.request.secret_arn).model_dump(mode="json")
