"""ReleaseLock: remove the name's lock, only if this execution holds it."""

from lambdas import powertools
from pgautodumper import lock
from pgautodumper.contract import parse_document

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    document = parse_document(event)
    return lock.run(document).model_dump(mode="json")
