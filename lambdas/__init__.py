"""The Lambda handlers: one module per function, each a thin layer over the package.

Every handler is the same short stack — powertools Logger (with the Lambda
context, never the event), Tracer and Metrics — over one call into
``pgautodumper``: parse the execution document, call, return the result model
as JSON. Failures are raised as the package's named exceptions; their class
name is the ``errorType`` the state machine's Retry/Catch match.
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "pgautodumper")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "pgautodumper")

# Record, RecordVerify and Notify emit metrics (Freshness its own single-metric documents);
# every handler carries the decorator, and an invocation without one is normal.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)


def powertools() -> tuple[Logger, Tracer, Metrics]:
    """The handler's logger, tracer and metrics.

    The package's own ``logging`` loggers (``pgautodumper.*``) are children of
    the powertools logger (named after the service, ``pgautodumper``), so
    their lines come out in the same JSON with the Lambda context. Metrics
    get no ``service`` dimension (``service=""``): the alarms name a metric
    by its exact dimension set, which is only ``Name``.
    """
    logger = Logger(service=SERVICE)
    if logger.name != "pgautodumper":  # a renamed service: copy its handler over
        copy_config_to_registered_loggers(source_logger=logger, include={"pgautodumper"})
    return logger, Tracer(service=SERVICE), Metrics(namespace=NAMESPACE, service="")
