"""boto3 clients, configured once.

Endpoint, region and credentials come from the standard AWS environment
(``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_S3``, ``AWS_REGION``/``AWS_DEFAULT_REGION``,
profiles, instance and task roles): boto3 reads them itself.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard mode retries throttling, 500/502/503/504 and connection errors with
# exponential backoff (https://docs.aws.amazon.com/boto3/latest/guide/retries.html);
# 5 attempts unless AWS_MAX_ATTEMPTS says otherwise.
DEFAULT_MAX_ATTEMPTS = 5
_CONFIG = Config(
    retries={
        "mode": "standard",
        "max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS),
    },
    connect_timeout=10,
    read_timeout=60,
    max_pool_connections=16,
    user_agent_extra="pgautodumper",
)


@cache
def _session() -> boto3.session.Session:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return boto3.session.Session(region_name=region or "us-east-1")


_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


def client(service: str) -> Any:
    """A client for ``service``; one per process and endpoint, shared across threads.

    boto3 sessions are not thread-safe and a client costs some 10 MiB: parallel
    streams starting at once must share one, not race to make several.
    """
    key = (service, os.environ.get("AWS_ENDPOINT_URL"))
    with _clients_lock:
        if key not in _clients:
            _clients[key] = _session().client(service, config=_CONFIG)
        return _clients[key]


def reset() -> None:
    """Forget the session and clients (the environment's endpoint or credentials changed)."""
    with _clients_lock:
        _clients.clear()
        _session.cache_clear()


def error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))
