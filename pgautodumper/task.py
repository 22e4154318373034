"""The Fargate task's boundary: its one input, its retries, and its outcome.

The state machine starts ``pgautodumper backup`` or ``pgautodumper verify``
with one environment variable, ``PGAUTODUMPER_TASK``: the :class:`TaskInput`
Preflight decided, as JSON. :func:`run` parses nothing else, retries what is
transient (a database restarting, S3 failing after botocore's own retries),
and on a failure stores ``<stem>.<task>.outcome.json`` before the process
exits with the error's code, so the workflow reports it by name.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import TypeVar

from pgautodumper import tls
from pgautodumper.connection import ConnectionInfo
from pgautodumper.contract import TaskInput, TaskName, parse_model
from pgautodumper.errors import PgautodumperError, RequestInvalidError, UnexpectedError
from pgautodumper.outcome import write_outcome
from pgautodumper.secrets import fetch_secret

log = logging.getLogger(__name__)

TASK_ENV = "PGAUTODUMPER_TASK"
# Waits of 20, 40 and 80 s outlast a Multi-AZ failover, "typically 60-120 seconds"
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/Concepts.MultiAZ.Failover.html).
ATTEMPTS = 4
BACKOFF_SECONDS = 20.0

T = TypeVar("T")


def input_from_environment() -> TaskInput | None:
    """The task's one input, when it runs as a Fargate task (``PGAUTODUMPER_TASK``)."""
    raw = os.environ.get(TASK_ENV)
    if not raw:
        return None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise RequestInvalidError(f"{TASK_ENV} is not JSON ({exc})") from None
    return parse_model(TaskInput, document, what=f"task input ({TASK_ENV})")


def connection(task_input: TaskInput) -> ConnectionInfo:
    """The database, from the secret version Preflight pinned."""
    if not task_input.secret_arn:
        raise RequestInvalidError(f"{TASK_ENV} names no secret_arn")
    secret = fetch_secret(task_input.secret_arn, task_input.secret_version_id)
    extra = {"sslmode": task_input.sslmode} if task_input.sslmode else {}
    extra |= tls.root_cert_params(task_input.sslmode, task_input.ssl_root_cert)
    return secret.connection(**extra)


def with_retries(action: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """Run ``action``, again after a transient (``retryable``) failure, at most ``attempts``."""
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except PgautodumperError as exc:
            if not exc.retryable or attempt == attempts:
                raise
            delay = BACKOFF_SECONDS * 2 ** (attempt - 1)
            log.warning(
                "%s failed (attempt %d/%d), retrying in %.0f s: %s",
                what, attempt, attempts, delay, exc.message,
            )  # fmt: skip
            time.sleep(delay)
    raise AssertionError("unreachable")


def run(task_input: TaskInput, name: TaskName, action: Callable[[], T]) -> T:
    """The task's work, retried when transient; any failure leaves its outcome document."""
    try:
        return with_retries(action, what=f"{name} of {task_input.keys.stem}")
    except PgautodumperError as exc:
        write_outcome(task_input, name, exc)
        raise
    except Exception as exc:
        unexpected = UnexpectedError(f"{name} failed unexpectedly: {type(exc).__name__}: {exc}")
        write_outcome(task_input, name, unexpected)
        raise unexpected from exc
