"""Record: read and check the run's manifest, flag a size anomaly, emit the metrics."""

from lambdas import powertools
from pgautodumper import record
from pgautodumper.contract import parse_document

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    document = parse_document(event)
    return record.run(document, metrics).model_dump(mode="json")
