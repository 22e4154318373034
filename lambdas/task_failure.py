"""ExplainDumpFailure / ExplainVerifyFailure: a task's raw failure → its named FailureInfo."""

from lambdas import powertools
from pgautodumper import outcome
from pgautodumper.contract import FailureInfo, TaskFailureEvent, parse_model

logger, tracer, metrics = powertools()


@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict, context: object) -> dict:
    request = parse_model(TaskFailureEvent, event, what="task failure event")
    failure: FailureInfo = request.document.require("error")
    return outcome.explain(failure, request.task, request.document).model_dump(
        mode="json", by_alias=True, exclude_none=True
    )
