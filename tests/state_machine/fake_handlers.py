"""Tiny real handlers for the patch-layer tests (Handler strings point here)."""

from __future__ import annotations

import os
from typing import Any


class PreflightConnectionError(Exception):
    """Same class name as the product's: the ASL matches errors by name."""


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "greeting": os.environ.get("FAKE_GREETING"),
        "function_name": context.function_name,
        "remaining_ms_positive": context.get_remaining_time_in_millis() > 0,
    }


def fail_connection(event: dict[str, Any], context: Any) -> dict[str, Any]:
    raise PreflightConnectionError("database at 127.0.0.1:1 refused the connection")
