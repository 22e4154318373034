"""Options shared by several verbs: where the database and the store are."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click
from pydantic import BaseModel

from pgautodumper.connection import ConnectionInfo
from pgautodumper.contract import DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS
from pgautodumper.errors import UsageError
from pgautodumper.secrets import fetch_secret


def bucket_options(
    func: Callable[..., Any] | None = None, *, required: bool = True
) -> Callable[..., Any]:
    """--bucket and --prefix; ``required=False`` where PGAUTODUMPER_TASK may name the bucket."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--prefix",
            default="",
            envvar="PGAUTODUMPER_PREFIX",
            show_default=True,
            help="Key prefix inside the bucket.",
        )(func)
        return click.option(
            "--bucket",
            required=required,
            envvar="PGAUTODUMPER_BUCKET",
            help="S3 bucket of the backups.",
        )(func)

    return decorate(func) if func is not None else decorate


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")(func)


def lock_wait_option(what: str) -> Callable[..., Any]:
    """--lock-wait-timeout: how long ``what`` may wait for one lock before failing by name."""
    return click.option(
        "--lock-wait-timeout",
        "lock_wait_timeout_seconds",
        type=click.IntRange(1),
        default=DEFAULT_LOCK_WAIT_TIMEOUT_SECONDS,
        show_default=True,
        metavar="SECONDS",
        help=f"Fail with LockTimeoutError (exit 15) when {what} waits this long for a lock.",
    )


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--database-url | --secret-arn [--secret-version-id] | the PG* environment."""
    func = click.option(
        "--secret-version-id",
        envvar="PGAUTODUMPER_SECRET_VERSION_ID",
        help="Pin the secret version (the workflow does, so rotation cannot split a run).",
    )(func)
    func = click.option(
        "--secret-arn",
        "--secret-id",
        "secret_arn",
        envvar="PGAUTODUMPER_SECRET_ARN",
        help="Secrets Manager secret (RDS format: host, port, username, password, dbname).",
    )(func)
    return click.option(
        "--database-url",
        envvar="PGAUTODUMPER_DATABASE_URL",
        help="postgresql://user@host:port/dbname (password better in PGPASSWORD or ~/.pgpass).",
    )(func)


def connection_from(
    database_url: str | None, secret_arn: str | None, secret_version_id: str | None
) -> ConnectionInfo:
    if database_url and secret_arn:
        raise UsageError("give either --database-url or --secret-arn, not both")
    if secret_arn:
        return fetch_secret(secret_arn, secret_version_id).connection()
    if database_url:
        return ConnectionInfo.from_url(database_url)
    return ConnectionInfo.from_environment()


def emit(model: BaseModel | list[Any] | dict[str, Any], as_json: bool, text: str) -> None:
    """JSON (stable, for scripts) or text (for people) on stdout."""
    if not as_json:
        click.echo(text)
    elif isinstance(model, BaseModel):
        click.echo(model.model_dump_json(indent=2, by_alias=True))
    else:
        click.echo(json.dumps(model, indent=2, default=str))


def human_bytes(size: float) -> str:
    """1536 -> '1.5 KiB', for text output (JSON output keeps exact byte counts)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
