"""LookupSecret: the secret ARN → a ConnectionTarget with the secret version pinned."""

from lambdas import powertools
from pgautodumper.contract import ExecutionDocument
from pgautodumper.secrets import lookup_target

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    document = ExecutionDocument.model_validate(event)
    return lookup_target(document.secret_arn).model_dump(mode="json")
